"""What `status` reports: one agency's own figures plus daemon-wide health, nothing of another agency."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..audit.manager import AuditManager
from ..control.server import ControlServer
from ..events import EventBus
from ..index.db import open_db
from ..index.disksize import index_size
from ..index.service import IndexPipeline
from ..index.store import AgencyStore
from ..logsetup import console_lines_lost, log_file_stalled
from ..vault.service import SnapshotService
from .agencies import Agencies

if TYPE_CHECKING:
    from ..vectors.service import VectorService


class StatusSources(Protocol):
    """The running parts status reads (the daemon satisfies this; status never imports the daemon)."""

    started_at: float
    started_mono: float
    ready: bool
    db_path: Path
    pipeline: IndexPipeline
    agencies: Agencies
    audit: AuditManager
    vault: SnapshotService
    control: ControlServer
    events: EventBus
    vectors: VectorService | None

    def streams_status(self) -> dict[str, str]: ...

    def threads_alive(self) -> dict[str, bool]: ...


_stats_cache: dict[tuple[int, str], tuple[int, dict[str, Any]]] = {}


def _db_stats(src: StatusSources, agency_id: str) -> dict[str, Any]:
    """Per-agency counts, O(files) to compute: recomputed only after the writer committed again."""
    key = (id(src), agency_id)
    hit = _stats_cache.get(key)
    commits = src.pipeline.commits()
    if hit is not None and hit[0] == commits:
        return hit[1]
    conn = open_db(src.db_path, migrate=False)
    try:
        store = AgencyStore(conn, agency_id)
        stats: dict[str, Any] = {**store.stats(), "skipped_reasons": store.skip_reasons()}
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


def _progress(src: StatusSources, agency_id: str) -> dict[str, Any]:
    """The agency's share of the queue, its sync (progress, rate, ETA, incomplete) and its latency."""
    pipeline = src.pipeline
    pending = pipeline.work.pending(agency_id)
    sync = pipeline.sync.state(agency_id)
    return {"queue": {"depth": pending["queued"], "in_flight": pending["in_flight"]},
            "sync": sync, "initial_sync": pipeline.sync.initial(agency_id), "incomplete": sync["incomplete"],
            "latency": pipeline.writer.latency.summary(agency_id)}


def agency_status(src: StatusSources, agency_id: str) -> dict[str, Any]:
    runtime = src.agencies.require(agency_id)
    # The sync verdict first, the counts after: a reply that says "complete" then counts every
    # file that verdict covers (the other order could pair a finished sync with the counts of a
    # commit before its last one).
    progress = _progress(src, agency_id)
    return {**_db_stats(src, agency_id), **runtime.status(), **progress,
            "audit": src.audit.heads().get(agency_id),
            "control": {"connections": src.control.slots.agency_count(agency_id),
                        "subscribers": src.events.subscriber_count(agency_id)},
            # the embedding step's state, lag and rate (issue 15)
            "vectors": src.vectors.agency_status(agency_id) if src.vectors is not None else {"state": "disabled"}}


def full_status(src: StatusSources, agency_id: str, index_files: Mapping[str, Path] | None = None,
                *, operator: bool = False) -> dict[str, Any]:
    """The status one agency's token may see: its own figures, and daemon-wide health without
    any other agency's name, path or counts.

    ``index_files`` (the database files every agency shares) are sized only for a caller who may
    read them anyway (root or the daemon's user); otherwise ``index_size`` is None. The prep
    worker's figures (files of every agency) go to that ``operator`` alone; otherwise None.
    """
    mine = agency_status(src, agency_id)
    threads = src.threads_alive()
    return {
        "running": True,
        "pid": os.getpid(),
        "uptime_s": round(time.monotonic() - src.started_mono, 1),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(src.started_at)),
        "ready": src.ready,
        "healthy": all(threads.values()),
        "threads": threads,
        "queue": {**mine["queue"], "idle": src.pipeline.idle()},  # idle: the whole daemon's, one boolean
        "crawl": {**mine["crawl"], "sync": mine["sync"], "initial_sync": mine["initial_sync"]},
        "incomplete": mine["incomplete"],
        "latency": mine["latency"],
        "index_size": index_size(index_files) if index_files is not None else None,
        "memory": _memory(),
        "agencies": {agency_id: mine},
        "lockdowns": [agency_id] if mine["locked"] else [],
        "agent": mine.pop("agent") or {"state": "disabled"},
        "vault": src.vault.vault_status(),
        "stalled": stalled_parts(src, agency_id),
        "streams": src.streams_status(),
        "log": {"console_lines_lost": console_lines_lost()},
        "prep_worker": prep_worker_status(src) if operator else None,
    }


def prep_worker_status(src: StatusSources) -> dict[str, Any]:
    """The prep worker process (bulk files prepared off the daemon's GIL): its resident MB now (0
    when none runs), starts, crashes (its files were then prepared in the daemon) and files."""
    counters = src.pipeline.indexer.counters
    return {"mb": src.pipeline.indexer.prep_worker_mb(), "starts": counters.get("prep_worker_starts", 0),
            "crashes": counters.get("prep_worker_crashes", 0), "files": counters.get("prepared_by_worker", 0),
            "files_here": counters.get("prepared_here", 0)}


def stalled_parts(src: StatusSources, agency_id: str | None = None) -> dict[str, str]:
    """Parts holding their work for a full disk, an I/O error or a busy lock, with why ("disk full:
    ..."); each retries by itself and leaves this list when the write goes through. Never tampering."""
    parts = {"index": src.pipeline.writer.stalled, "audit_outbox": src.pipeline.acks.stalled,
             "snapshots": src.vault.stalled, "log_file": log_file_stalled()}
    heads = src.audit.heads()
    for agency in [agency_id] if agency_id is not None else sorted(heads):
        head = heads.get(agency) or {}
        parts["audit" if agency_id is not None else f"audit {agency}"] = head.get("stalled")
    return {k: str(v) for k, v in parts.items() if v}


def status_line(src: StatusSources) -> str:
    """One line for systemd's STATUS= (the operator's view: daemon-wide counts)."""
    stats = src.pipeline.stats()
    parts = [f"indexed {stats['writer'].get('indexed', 0)}", f"queued {stats['queue']['depth']}",
             f"crawl {'done' if stats['crawl']['done'] else 'running'}"]
    locked = src.audit.lockdown.locked()
    if locked:
        parts.append(f"locked {','.join(sorted(locked))}")
    parts += [f"{part} stalled ({why})" for part, why in stalled_parts(src).items()]
    for runtime in src.agencies:
        if runtime.agent is not None:
            parts.append(f"agent {runtime.agent.status().get('state')}")
    if src.vectors is not None:
        parts.append(src.vectors.line())
    parts += [f"{name} {state}" for name, state in src.streams_status().items()
              if state not in ("connected", "running")]
    return "; ".join(parts)
