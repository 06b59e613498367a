"""The one writer thread that owns the write connection to kora_kernel.db.

Live changes commit one file per transaction so they are searchable at once;
bulk work (start-up crawl, rescans) is batched many files per transaction.
Each job runs in its own savepoint, so one bad file never spoils a batch.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import apsw
import structlog

from .db import immediate, open_db
from .jobs import CallJob, DeleteJob, IndexJob, Job, MoveJob, TouchJob
from .store import AgencyStore, optimize_fts

log = structlog.get_logger(__name__)

# Threads hand the GIL back and forth around every SQLite call; with the default 5 ms
# switch interval the writer waits on the chunkers. The daemon sets 1 ms
# (sys.setswitchinterval): ~1.4x faster bulk indexing in bench/bench_index.py.
SWITCH_INTERVAL = 0.001
BULK_LINGER_S = 0.25


@dataclass(frozen=True)
class Applied:
    """What a committed job did; handed to ``on_committed`` for audit records and events."""

    agency_id: str
    type: str  # index | skip | delete | move | touch
    data: dict[str, object]
    started: float


class _Retry(Exception):
    """A job failed inside a batch: roll the batch back and replay it job by job."""


class SkipFile(Exception):
    """Raised while streaming chunks when a file turns out unusable (e.g. invalid UTF-8)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Writer:
    def __init__(
        self,
        db_path: Path,
        *,
        on_committed: Callable[[list[Applied]], None] | None = None,
        batch_files: int = 2000,
        batch_bytes: int = 64 << 20,
        optimize_idle_s: float = 30.0,
        queue_max: int = 256,
        is_ignored: Callable[[str, str, str], bool] | None = None,
    ) -> None:
        self.db_path = db_path
        self.is_ignored = is_ignored
        self.on_committed = on_committed
        self.batch_files = batch_files
        self.batch_bytes = batch_bytes
        self.optimize_idle_s = optimize_idle_s
        self._q: queue.Queue[Job | None] = queue.Queue(maxsize=queue_max)
        self._thread = threading.Thread(target=self._run, name="kora-writer", daemon=True)
        self._pending: Job | None = None
        self._stopping = False
        self._stop_seen = False
        self._outstanding = 0
        self._count_lock = threading.Lock()
        self.counters: Counter[str] = Counter()
        self.last_commit: float | None = None
        self._dirty_since_optimize = False

    # -- public -----------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queue a job; blocks when the writer is behind (back-pressure on the workers)."""
        with self._count_lock:
            self._outstanding += 1
        self._q.put(job)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def depth(self) -> int:
        """Jobs submitted and not yet committed (and handed on)."""
        return self._outstanding

    def call(self, fn: Callable[[apsw.Connection], object], timeout: float = 60.0) -> object:
        """Run ``fn`` on the writer connection after all earlier jobs; wait for it."""
        result: list[object] = []
        job = CallJob(fn=lambda conn: result.append(fn(conn)))
        self.submit(job)
        if not job.done.wait(timeout):
            raise TimeoutError("writer did not answer in time")
        return result[0] if result else None

    def flush(self, timeout: float = 60.0) -> None:
        self.call(lambda conn: None, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if not self._thread.is_alive():
            return
        self._stopping = True
        try:
            self._q.put(None, timeout=timeout)
        except queue.Full:
            log.error("writer_stop_queue_full")
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("writer_stop_timeout", timeout=timeout)

    # -- thread -----------------------------------------------------------------
    def _next(self, timeout: float | None) -> Job | None:
        if self._pending is not None:
            job, self._pending = self._pending, None
            return job
        if self._stop_seen:
            return None
        return self._q.get(timeout=timeout)

    def _run(self) -> None:
        conn = open_db(self.db_path)
        try:
            while True:
                try:
                    job = self._next(self.optimize_idle_s)
                except queue.Empty:
                    self._idle_optimize(conn)
                    continue
                if job is None:
                    break
                batch = self._gather(job)
                try:
                    self._apply_batch(conn, batch)
                finally:
                    with self._count_lock:
                        self._outstanding -= len(batch)
        except Exception:
            log.exception("writer_crashed")
            raise
        finally:
            conn.close()

    def _gather(self, first: Job) -> list[Job]:
        batch = [first]
        if not first.bulk:
            return batch
        size = getattr(first, "nbytes", 0)
        if _streamed(first):
            return batch
        # Bulk work is not waiting on anyone: linger briefly for more, since every commit
        # flushes FTS5's pending terms into a new segment (fewer, larger commits are faster).
        deadline = time.monotonic() + BULK_LINGER_S
        while len(batch) < self.batch_files and size < self.batch_bytes:
            try:
                job = self._q.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                self._stop_seen = True
                break
            if not job.bulk or _streamed(job):
                self._pending = job
                break
            batch.append(job)
            size += getattr(job, "nbytes", 0)
        return batch

    def _apply_batch(self, conn: apsw.Connection, batch: list[Job]) -> None:
        """Apply a batch in one transaction.

        No savepoint per job: FTS5 flushes its pending terms at every savepoint, which
        would turn each file into its own index segment. A batch that fails as a whole
        is rolled back and replayed one job per transaction, so one bad file costs
        only itself.
        """
        calls = [j for j in batch if isinstance(j, CallJob)]
        jobs = [j for j in batch if not isinstance(j, CallJob)]
        applied: list[Applied] = []
        if len(jobs) > 1:
            try:
                with immediate(conn):
                    for job in jobs:
                        result = self._apply_one(conn, job)
                        if result is not None:
                            applied.append(result)
            except _Retry:
                applied = []
                self.counters["batch_replays"] += 1
                for job in jobs:
                    applied.extend(self._apply_alone(conn, job))
        else:
            for job in jobs:
                applied.extend(self._apply_alone(conn, job))
        self.last_commit = time.monotonic()
        self.counters["commits"] += 1
        if applied:
            self._dirty_since_optimize = True
            if self.on_committed is not None:
                try:
                    self.on_committed(applied)
                except Exception:
                    log.exception("on_committed_failed")
        for call in calls:
            try:
                call.fn(conn)
            except Exception:
                log.exception("writer_call_failed")
            finally:
                call.done.set()

    def _apply_one(self, conn: apsw.Connection, job: Job) -> Applied | None:
        """Inside a batch: any failure aborts the batch so it can be replayed job by job."""
        try:
            return self._dispatch(AgencyStore(conn, job.agency_id), job)  # type: ignore[union-attr]
        except (SkipFile, OSError, apsw.Error) as exc:
            raise _Retry() from exc

    def _apply_alone(self, conn: apsw.Connection, job: Job) -> list[Applied]:
        store = AgencyStore(conn, job.agency_id)  # type: ignore[union-attr]
        try:
            for attempt in range(3):
                try:
                    with immediate(conn):
                        result = self._dispatch(store, job)
                    return [result] if result is not None else []
                except apsw.BusyError:
                    if attempt == 2:
                        raise
                    self.counters["busy_retries"] += 1
                    time.sleep(0.05 * (attempt + 1))
        except SkipFile as skip:
            assert isinstance(job, IndexJob)
            with immediate(conn):
                store.put_document(job.root, job.path, job.size, job.mtime_ns, job.sha256, (), skip.reason)
            self.counters[f"skipped_{skip.reason}"] += 1
            data: dict[str, object] = {"root": job.root, "path": job.path, "reason": skip.reason}
            return [Applied(job.agency_id, "skip", data, job.started)]
        except (OSError, apsw.Error) as exc:
            self.counters["job_errors"] += 1
            log.warning("writer_job_failed", job=type(job).__name__, error=str(exc))
        return []

    def _dispatch(self, store: AgencyStore, job: Job) -> Applied | None:
        if isinstance(job, IndexJob):
            return self._index(store, job)
        if isinstance(job, TouchJob):
            store.touch_document(job.root, job.path, job.size, job.mtime_ns)
            return None
        if isinstance(job, DeleteJob):
            n = store.delete_tree(job.root, job.path) if job.tree else int(store.delete_document(job.root, job.path))
            if not n:
                return None
            self.counters["deleted"] += n
            return Applied(job.agency_id, "delete", {"root": job.root, "path": job.path, "files": n}, time.monotonic())
        if isinstance(job, MoveJob):
            if job.tree:
                n = store.move_tree(job.root, job.src, job.dst)
            else:
                n = int(store.move_document(job.root, job.src, job.dst))
            if not n:
                return None
            self.counters["moved"] += n
            data = {"root": job.root, "src": job.src, "dst": job.dst, "files": n}
            return Applied(job.agency_id, "move", data, time.monotonic())
        return None  # pragma: no cover

    def _index(self, store: AgencyStore, job: IndexJob) -> Applied | None:
        if not _still_same(job):
            self.counters["stale_jobs"] += 1
            return None  # the file changed again or vanished: a newer event follows
        if self.is_ignored is not None and self.is_ignored(job.agency_id, job.root, job.path):
            self.counters["ignored_late"] += 1  # the ignore rules changed after the event was queued
            n = int(store.delete_document(job.root, job.path))
            return Applied(job.agency_id, "delete", {"root": job.root, "path": job.path, "files": n},
                           job.started) if n else None
        if job.skipped:
            store.put_document(job.root, job.path, job.size, job.mtime_ns, job.sha256, (), job.skipped)
            self.counters[f"skipped_{job.skipped}"] += 1
            return Applied(job.agency_id, "skip", {"root": job.root, "path": job.path, "reason": job.skipped},
                           job.started)
        n = store.put_document(job.root, job.path, job.size, job.mtime_ns, job.sha256, job.chunks)
        self.counters["indexed"] += 1
        self.counters["chunks"] += n
        self.counters["bytes"] += job.size
        data = {"root": job.root, "path": job.path, "sha256": job.sha256, "size": job.size, "chunks": n}
        return Applied(job.agency_id, "index", data, job.started)

    def _idle_optimize(self, conn: apsw.Connection) -> None:
        if not self._dirty_since_optimize:
            return
        self._dirty_since_optimize = False
        t0 = time.monotonic()
        with immediate(conn):
            optimize_fts(conn)
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        log.info("fts_optimized", seconds=round(time.monotonic() - t0, 3))


def _still_same(job: IndexJob) -> bool:
    try:
        st = os.stat(job.abs_path)
    except OSError:
        return False
    return st.st_size == job.size and st.st_mtime_ns == job.mtime_ns


def _streamed(job: Job) -> bool:
    """A big file whose chunks are read while inserting: it gets a transaction of its own."""
    return isinstance(job, IndexJob) and not isinstance(job.chunks, list | tuple)
