"""What `status` reports, assembled from the running parts."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from ..index.db import open_db
from ..index.store import AgencyStore

if TYPE_CHECKING:
    from .assembler import Daemon


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)
    p99 = s[min(len(s) - 1, int(len(s) * 0.99))]
    return {"p50_ms": round(s[len(s) // 2] * 1000, 3), "p99_ms": round(p99 * 1000, 3)}


_stats_cache: dict[tuple[int, str], tuple[int, dict[str, int]]] = {}


def _db_stats(daemon: Daemon, agency_id: str) -> dict[str, int]:
    """Per-agency counts, O(files) to compute: recomputed only after the writer committed again."""
    key = (id(daemon), agency_id)
    hit = _stats_cache.get(key)
    commits = daemon.writer.counters.get("commits", 0)
    if hit is not None and hit[0] == commits:
        return hit[1]
    conn = open_db(daemon.db_path, migrate=False)
    try:
        stats = AgencyStore(conn, agency_id).stats()
    finally:
        conn.close()
    _stats_cache[key] = (commits, stats)
    return stats


def _memory() -> dict[str, float]:
    import apsw
    import psutil

    return {"rss_mb": round(psutil.Process().memory_info().rss / 1e6, 1),
            "sqlite_mb": round(apsw.memory_used() / 1e6, 1),
            "sqlite_peak_mb": round(apsw.memory_high_water() / 1e6, 1)}


def agency_status(daemon: Daemon, agency_id: str) -> dict[str, Any]:
    stats = _db_stats(daemon, agency_id)
    watch = daemon.watchset.stats().get(agency_id, [])
    locked = daemon.lockdown.locked().get(agency_id)
    return {
        **stats,
        "locked": bool(locked),
        "lockdown": locked,
        "watch": watch,
        "polling": [w["root"] for w in watch if w.get("mode") == "polling"],
        "degraded_roots": {r: why for (a, r), why in daemon.degraded_roots.items() if a == agency_id},
        "last_snapshot": daemon.snapshots.last(agency_id),
        "audit": daemon.audit.heads().get(agency_id),
        # h-vectors (issue 15): state, lag and rate of the embedding step
        "vectors": daemon.vectors.agency_status(agency_id) if daemon.vectors is not None else {"state": "disabled"},
    }


def full_status(daemon: Daemon, agency_id: str | None = None) -> dict[str, Any]:
    agencies = [a.agency_id for a in daemon.cfg.agencies if agency_id in (None, a.agency_id)]
    return {
        "pid": os.getpid(),
        "uptime_s": round(time.monotonic() - daemon.started_mono, 1),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(daemon.started_at)),
        "ready": daemon.ready,
        "queue": {"depth": daemon.work.depth(), "writer": daemon.writer.depth(), "acks": daemon.acks.depth(),
                  "busy_workers": daemon.work.stats()["in_flight"], "idle": daemon.idle()},
        "crawl": {**daemon.crawler.progress(), "initial_sync": daemon.initial_sync},
        "indexer": dict(daemon.indexer.counters),
        "writer": dict(daemon.writer.counters),
        "latency": _percentiles(daemon.acks.latencies),
        "memory": _memory(),
        "agencies": {a: agency_status(daemon, a) for a in agencies},
        # Tenancy: an agency sees its own lockdown and the agent only if the agent works for it.
        "lockdowns": sorted(a for a in daemon.lockdown.locked() if a in agencies),
        "agent": _agent(daemon, agencies),
        "vault": daemon.snapshots.vault_status(),
    }


def _agent(daemon: Daemon, agencies: list[str]) -> dict[str, Any]:
    if daemon.supervisor is None:
        return {"state": "disabled"}
    if daemon.cfg.agent.agency_id not in agencies:
        return {"state": "not this agency's"}
    return dict(daemon.supervisor.status())


def status_line(daemon: Daemon) -> str:
    """One line for systemd's STATUS=."""
    try:
        files = sum(daemon.writer.counters.get(k, 0) for k in ("indexed",))
        parts = [
            f"indexed {files}",
            f"queued {daemon.work.depth()}",
            f"crawl {'done' if daemon.crawler.idle else 'running'}",
        ]
        locked = daemon.lockdown.locked()
        if locked:
            parts.append(f"locked {','.join(sorted(locked))}")
        if daemon.supervisor is not None:
            parts.append(f"agent {daemon.supervisor.status().get('state')}")
        if daemon.vectors is not None:  # h-vectors (issue 15)
            parts.append(daemon.vectors.line())
        return "; ".join(parts)
    except AttributeError:
        return "starting"
