"""The index pipeline as one part: work queue, reconcile crawler, chunk workers, writer, audit step.

It owns every thread and queue between a file change and its audit record, and the
registry of attached roots (folder + ignore rules per agency root) that the workers and
the writer consult. Agency runtimes attach and detach their roots; nothing else reaches in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from ..config_model import IndexConfig, WatchConfig
from ..watch.changes import FileChange
from ..watch.crawl import Crawler
from ..watch.ignore import IgnoreRules
from ..watch.reconcile import reconcile
from ..watch.workqueue import WorkQueue
from .acknowledger import Acknowledger, AppendedFn, AuditManyFn, PublishFn
from .db import open_db
from .pipeline import Indexer
from .prepare import ChunkParams
from .store import AgencyStore
from .syncstate import SyncTracker
from .writer import Writer

log = structlog.get_logger(__name__)

# The start-up crawl keeps at most this many changes queued ahead of the indexer: memory stays
# flat however many files a root holds (100 k queued changes cost ~40 MB).
CRAWL_HIGH_WATER = 512


@dataclass(frozen=True)
class AttachedRoot:
    agency_id: str
    root: str
    path: Path
    rules: IgnoreRules


class RootRegistry:
    """Which (agency, root) pairs are attached, with their folder and ignore rules. Thread-safe."""

    def __init__(self) -> None:
        self._roots: dict[tuple[str, str], AttachedRoot] = {}
        self._lock = threading.Lock()

    def attach(self, entry: AttachedRoot) -> None:
        with self._lock:
            self._roots[(entry.agency_id, entry.root)] = entry

    def detach(self, agency_id: str) -> None:
        with self._lock:
            for key in [k for k in self._roots if k[0] == agency_id]:
                del self._roots[key]

    def get(self, agency_id: str, root: str) -> AttachedRoot | None:
        return self._roots.get((agency_id, root))

    def is_ignored(self, agency_id: str, root: str, path: str) -> bool:
        entry = self._roots.get((agency_id, root))
        return entry is not None and entry.rules.is_ignored(path)


class _RootPaths:
    """The read-only mapping view the chunk workers use: (agency, root) -> folder."""

    def __init__(self, registry: RootRegistry) -> None:
        self._registry = registry

    def get(self, key: tuple[str, str], /) -> Path | None:
        entry = self._registry.get(*key)
        return entry.path if entry is not None else None


class IndexPipeline:
    def __init__(self, db_path: Path, index: IndexConfig, watch: WatchConfig, *, audit: AuditManyFn | None,
                 appended: AppendedFn | None, publish: PublishFn | None, is_locked: Callable[[str], bool]) -> None:
        self.db_path = db_path
        self.roots = RootRegistry()
        self.work = WorkQueue(maxsize=watch.queue_max)
        self.acks = Acknowledger(db_path=db_path, audit=audit, appended=appended, publish=publish)
        self.writer = Writer(db_path, is_ignored=self.roots.is_ignored, on_committed=self.acks.submit,
                             batch_files=index.bulk_batch_files, batch_bytes=index.bulk_batch_bytes,
                             optimize_idle_s=index.optimize_idle_s)
        self.indexer = Indexer(db_path=db_path, work=self.work, writer=self.writer, root_paths=_RootPaths(self.roots),
                               params=ChunkParams(index.chunk_bytes, index.overlap_percent, index.max_file_bytes),
                               workers=index.workers, on_rescan=self.reconcile, is_locked=is_locked,
                               prep_process=index.prep_process)
        self.crawler = Crawler(put=self.work.put, depth=self.work.depth,
                               high_water=max(8, min(CRAWL_HIGH_WATER, watch.queue_max // 2)), is_locked=is_locked)
        self.sync = SyncTracker(self.crawler, self.work, self.writer)  # per agency: progress, ETA, incomplete
        self.started_mono = time.monotonic()
        self.initial_sync: dict[str, Any] | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """The audit outbox first (what a previous run committed but did not log), then every thread."""
        self.acks.drain_on_start()
        self.acks.start()
        self.writer.start()
        self.indexer.start()
        self.crawler.start()

    def alive(self) -> dict[str, bool]:
        """Liveness of every core thread (a dead one makes the daemon stop and exit non-zero)."""
        return {"writer": self.writer.alive(), "acks": self.acks.alive(), "indexer": self.indexer.alive(),
                "crawler": self.crawler.alive()}

    def stop(self, deadline: float) -> None:
        """Stop the crawl, drain what is queued while time is left, then stop every thread."""
        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        self.crawler.stop(left())
        self._drain(left)
        self.work.stop()
        self.writer.stopping()  # a write held up by a full disk is dropped now, not retried to the deadline
        self.indexer.stop(left())
        self.writer.stop(left())
        self.acks.stop(left())

    def _drain(self, left: Callable[[], float]) -> None:
        """Index what is queued while time is left, unless the writer is held up (disk full): then
        nothing more can be committed, and the next start's reconcile redoes what is left."""
        while not self.work.wait_idle(min(0.25, left())):
            if self.writer.stalled is not None:
                break
            if left() <= 0:
                log.warning("drain_timeout", queued=self.work.depth())
                return
        if self.writer.stalled is not None:
            log.warning("drain_skipped", reason=self.writer.stalled, queued=self.work.depth() + self.writer.depth())
            return
        try:
            self.writer.flush(max(0.05, left()))
        except Exception as exc:
            log.warning("drain_flush_failed", error=str(exc))

    # -- roots and reconcile --------------------------------------------------------------
    def attach(self, agency_id: str, root: str, path: Path, rules: IgnoreRules) -> None:
        self.roots.attach(AttachedRoot(agency_id, root, path, rules))

    def detach(self, agency_id: str) -> None:
        self.roots.detach(agency_id)

    def reconcile(self, agency_id: str, root: str) -> None:
        """Queue a reconcile crawl of an attached root (start-up, unlock, reload, overflow rescan)."""
        entry = self.roots.get(agency_id, root)
        if entry is None:
            return

        def changes() -> Iterable[FileChange]:
            self._wait_for_writer()  # what the index holds, including jobs already on their way
            conn = open_db(self.db_path, migrate=False)
            try:
                known = AgencyStore(conn, agency_id).known_index(root)
            finally:
                conn.close()
            return reconcile(agency_id, root, entry.path, entry.rules, known)

        self.crawler.schedule(agency_id, root, changes)

    def _wait_for_writer(self) -> None:
        """Flush the writer; while it holds a write for a full disk, keep waiting (a reconcile given
        up here would leave the changes made while nobody watched unindexed until the next start)."""
        while True:
            try:
                self.writer.flush()
                return
            except TimeoutError:
                if self.writer.stalled is None or not self.writer.alive():
                    raise
                log.warning("reconcile_waits_for_writer", reason=self.writer.stalled)

    # -- state ----------------------------------------------------------------------------
    def idle(self) -> bool:
        """Nothing queued, crawled, chunked, written or waiting for its audit record."""
        work = self.work.stats()
        return (self.crawler.idle and work["depth"] == 0 and work["in_flight"] == 0
                and self.writer.depth() == 0 and self.acks.depth() == 0)

    def note_initial_sync(self) -> None:
        """From the main loop: note when each agency's initial sync, and the daemon's, is complete."""
        self.sync.poll()
        if self.initial_sync is None and self.idle():
            seconds = (self.writer.last_commit or time.monotonic()) - self.started_mono
            nbytes = self.writer.counters.get("bytes", 0)
            self.initial_sync = {"seconds": round(seconds, 3), "files": self.writer.counters.get("indexed", 0),
                                 "bytes": nbytes, "mb_per_s": round(nbytes / 1e6 / seconds, 2) if seconds else 0}
            log.info("initial_sync_done", **self.initial_sync)

    def commits(self) -> int:
        return int(self.writer.counters.get("commits", 0))

    def stats(self) -> dict[str, Any]:
        """Daemon-wide figures (the operator's view; never shown to one agency)."""
        return {"queue": {"depth": self.work.depth(), "writer": self.writer.depth(), "acks": self.acks.depth(),
                          "busy_workers": self.work.stats()["in_flight"], "idle": self.idle()},
                "crawl": {**self.crawler.progress(), "initial_sync": self.initial_sync},
                "indexer": dict(self.indexer.counters), "writer": dict(self.writer.counters),
                "latency": self.writer.latency.summary()}
