"""Human-readable rendering of a status dictionary (the `--json` form is the dictionary itself)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: this module is on every CLI call
if TYPE_CHECKING:
    from typing import Any


def _dur(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86_400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


def _mb(n: Any) -> str:
    return f"{(n or 0) / 1e6:.1f} MB"


def _ms(v: Any) -> str:
    v = float(v or 0)
    return f"{v:.1f} ms" if v < 10 else f"{v:.0f} ms"


def _sync_line(sync: dict[str, Any]) -> str | None:
    """The agency's current (or last) sync: found / done, bytes, rate and ETA."""
    if not sync or sync.get("kind") is None:
        return None
    name = "initial sync" if sync.get("kind") == "initial" else "rescan"
    walk = sync.get("walk_done")
    found = f"{sync.get('found', 0)}" + ("" if walk else "+")
    line = (f"  {name}: {sync.get('state')}; {sync.get('done', 0)}/{found} files, "
            f"{_mb(sync.get('bytes_done'))}/{_mb(sync.get('bytes_found'))}{'' if walk else '+'}, "
            f"{sync.get('mb_per_s', 0)} MB/s, {float(sync.get('seconds') or 0):.1f} s")
    if sync.get("incomplete"):
        eta = sync.get("eta_s")
        line += ", ETA " + ("unknown" if eta is None else f"{'at least ' if not walk else ''}{float(eta):.0f} s")
        if not walk:
            line += " (the walk is still finding files)"
    return line


def _latency_line(lat: dict[str, Any]) -> str | None:
    parts = []
    for phase in ("live", "crawl"):
        p = (lat or {}).get(phase) or {}
        if p.get("window"):
            parts.append(f"{phase} p50 {_ms(p.get('p50_ms'))}, p99 {_ms(p.get('p99_ms'))} (last {p.get('window')})")
    return "  queued → searchable: " + "; ".join(parts) if parts else None


def _size_line(size: dict[str, Any] | None) -> str | None:
    if not size:
        return None
    parts = [f"database {_mb(size.get('database'))}", f"WAL {_mb(size.get('database_wal'))}"]
    if "vectors" in size:
        parts.append(f"vectors {_mb(size.get('vectors', 0) + size.get('vectors_wal', 0))}")
    return f"index on disk: {_mb(size.get('total'))} ({', '.join(parts)}; shared by every agency)"


def render_status(st: dict[str, Any], *, online: bool) -> str:
    if not online:
        lines = ["koradaemon: not running (figures read from the data root)"]
    else:
        lines = [f"koradaemon: running, pid {st.get('pid')}, up {_dur(st.get('uptime_s', 0))}, "
                 f"{'ready' if st.get('ready') else 'starting'}"]
        q = st.get("queue", {})
        lines.append(f"queue: {q.get('depth', 0)} changes waiting, {q.get('in_flight', 0)} being indexed")
    size = _size_line(st.get("index_size"))
    if size:
        lines.append(size)
    if st.get("incomplete"):
        lines.append("results incomplete: a sync is running, searches may miss files until it is done")
    for agency, a in sorted(st.get("agencies", {}).items()):
        state = "LOCKDOWN" if a.get("locked") else "ok"
        lines.append(f"agency {agency}: {state}; {a.get('files', 0)} files, {a.get('chunks', 0)} chunks, "
                     f"{a.get('bytes', 0)} bytes, {a.get('skipped', 0)} skipped")
        if a.get("locked"):
            lines.append(f"  lockdown: {a.get('lockdown')}")
        for w in a.get("watch", []):
            lines.append(f"  watch {w.get('root')}: {w.get('mode', '?')}, "
                         f"{w.get('watched_dirs', '?')}/{w.get('total_dirs', '?')} dirs watched")
        for root, why in (a.get("degraded_roots") or {}).items():
            lines.append(f"  degraded {root}: {why}")
        for extra in (_sync_line(a.get("sync") or {}), _latency_line(a.get("latency") or {})):
            if extra:
                lines.append(extra)
        vec = a.get("vectors")  # h-vectors (issue 15)
        if vec and vec.get("state") != "disabled":
            lines.append(f"  vectors: {vec.get('state')}" + (f" ({vec['error']})" if vec.get("error") else
                         f", {vec.get('passages', 0)} passages, lag {vec.get('lag_chunks', 0)} chunks /"
                         f" {vec.get('lag_bytes', 0)} bytes, {vec.get('mb_per_s', 0)} MB/s"))
        snap = a.get("last_snapshot")
        lines.append(f"  last snapshot: {snap.get('id') if isinstance(snap, dict) else snap or 'none'}")
    agent = st.get("agent")
    if agent and agent.get("state") == "disabled":
        lines.append("agent: not supervised (agent.enabled is false)")
    elif agent:
        extra = f", last restore {agent['last_restore']}" if agent.get("last_restore") else ""
        lines.append(f"agent: {agent.get('state')}, pid {agent.get('pid')}, restarts {agent.get('restarts', 0)}{extra}")
    if st.get("lockdowns"):
        lines.append(f"lockdowns: {', '.join(st['lockdowns'])}")
    for part, why in sorted((st.get("stalled") or {}).items()):  # held and retried by itself; not tampering
        lines.append(f"stalled {part}: {why} (retrying; nothing is lost)")
    streams = st.get("streams") or {}
    if streams.get("nats") == "refused":
        lines.append("nats: the server refused the credentials; audit records wait in the spool"
                     " (fix nats.nkey_seed_secret / nats.creds_secret; see the log)")
    elif streams.get("nats") == "down":
        lines.append("nats: server unreachable; retrying, records wait in the spool")
    lost = (st.get("log") or {}).get("console_lines_lost")
    if lost:
        lines.append(f"log: {lost} lines could not be written to the console stream (the log file has them)")
    return "\n".join(lines)
