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


def render_status(st: dict[str, Any], *, online: bool) -> str:
    if not online:
        lines = ["koradaemon: not running (figures read from the data root)"]
    else:
        lines = [f"koradaemon: running, pid {st.get('pid')}, up {_dur(st.get('uptime_s', 0))}, "
                 f"{'ready' if st.get('ready') else 'starting'}"]
        q = st.get("queue", {})
        crawl = st.get("crawl", {})
        lines.append(f"queue: {q.get('depth', 0)} changes, writer {q.get('writer', 0)}, "
                     f"workers busy {q.get('busy_workers', 0)}")
        lines.append(f"initial crawl: {'done' if crawl.get('done') else 'running'} "
                     f"({crawl.get('roots_done', 0)}/{crawl.get('roots_total', 0)} roots, "
                     f"{crawl.get('changes_queued', 0)} changes)")
        lat = st.get("latency") or {}
        if lat:
            lines.append(f"file read → committed (searchable): p50 {lat.get('p50_ms')} ms,"
                         f" p99 {lat.get('p99_ms')} ms")
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
    sync = (st.get("crawl") or {}).get("initial_sync")
    if sync:
        lines.append(f"initial sync: {sync.get('files')} files in {sync.get('seconds')} s"
                     f" ({sync.get('mb_per_s')} MB/s)")
    if st.get("lockdowns"):
        lines.append(f"lockdowns: {', '.join(st['lockdowns'])}")
    for part, why in sorted((st.get("stalled") or {}).items()):  # held and retried by itself; not tampering
        lines.append(f"stalled {part}: {why} (retrying; nothing is lost)")
    return "\n".join(lines)
