"""The one writer thread that owns the write connection to kora_kernel.db.

Live changes commit one file per transaction so they are searchable at once;
bulk work (start-up crawl, rescans) is batched many files per transaction.
Each job runs in its own savepoint, so one bad file never spoils a batch.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import apsw
import structlog

from . import outbox
from .db import fine_busy_handler, give_back_free_pages, immediate, open_db
from .jobs import CallJob, DeleteJob, IndexJob, Job, MoveJob, TouchJob
from .names import shown_name
from .store import AgencyStore, discard_deferred, flush_deferred, optimize_fts

log = structlog.get_logger(__name__)

# Threads hand the GIL back and forth around every SQLite call; with the default 5 ms
# switch interval the writer waits on the chunkers. The daemon sets 1 ms
# (sys.setswitchinterval): ~1.4x faster bulk indexing in bench/bench_index.py.
SWITCH_INTERVAL = 0.001
BULK_LINGER_S = 0.05
BULK_MAX_TXN_S = 0.5
QUEUE_TEXT_BYTES = 16 << 20
# Live changes queued at least this deep are batched like bulk work: a burst converges at
# close to the bulk rate, while a single change still commits alone and at once.
DEEP_QUEUE = 4
CHECKPOINT_BUSY_MS = 50
IDLE_TICK_S = 1.0  # after this long without work: checkpoint the WAL (TRUNCATE) if bulk work ran


@dataclass(frozen=True)
class Applied:
    """What a committed job did: its audit record (in the outbox, same transaction) and ``on_committed``."""

    agency_id: str
    type: str  # index | skip | delete | move | touch
    data: dict[str, object]
    started: float


class _Retry(Exception):
    """A job failed inside a batch: roll the batch back and replay it job by job."""


class WriterStopped(RuntimeError):
    """The writer thread is gone: nothing more can be committed until a restart."""


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
        queue_max: int = 64,
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
        self._stop_seen = False
        self._outstanding = 0
        self._count_lock = threading.Lock()
        self._held = 0
        self._bytes_cv = threading.Condition()
        self.counters: Counter[str] = Counter()
        self.last_commit: float | None = None
        self._dirty_since_optimize = False
        self._bulk_dirty = False

    # -- public -----------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queue a job; blocks when the writer is behind (back-pressure on the workers).

        Besides the job count, the text held by queued jobs is bounded (``QUEUE_TEXT_BYTES``),
        so memory stays flat when many big files arrive at once.
        """
        held = _held_bytes(job)
        with self._bytes_cv:
            while self._held and self._held + held > QUEUE_TEXT_BYTES:
                self._bytes_cv.wait(1.0)
                self._check_running()
            self._held += held
        with self._count_lock:
            self._outstanding += 1
        while True:
            try:
                self._q.put(job, timeout=1.0)
                return
            except queue.Full:
                self._check_running()

    def _check_running(self) -> None:
        """A producer never blocks forever on a writer thread that died (the daemon sees alive() False)."""
        if self._thread.ident is not None and not self._thread.is_alive():
            raise WriterStopped("the writer thread is not running")

    def _release(self, job: Job | None) -> None:
        held = _held_bytes(job) if job is not None else 0
        if held:
            with self._bytes_cv:
                self._held -= held
                self._bytes_cv.notify_all()

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
        taken = self._q.get(timeout=timeout)
        self._release(taken)
        return taken

    def _run(self) -> None:
        try:
            conn = open_db(self.db_path, cache_kib=16_000)
        except Exception as exc:  # the thread ends; alive() says so and producers get WriterStopped
            log.error("writer_cannot_start", error=str(exc))
            return
        fine_busy_handler(conn)
        idle_since = time.monotonic()
        try:
            while True:
                try:
                    job = self._next(IDLE_TICK_S)
                except queue.Empty:
                    self._idle(conn, time.monotonic() - idle_since)
                    continue
                if job is None:
                    break
                try:
                    if self._batchable(job):
                        self._run_bulk(conn, job)
                    else:
                        self._run_single(conn, job)
                except Exception:  # never die on one job: count it, say so, go on
                    self.counters["job_errors"] += 1
                    log.exception("writer_job_crashed", job=type(job).__name__)
                idle_since = time.monotonic()
        except BaseException:
            log.exception("writer_crashed")
            raise
        finally:
            self._checkpoint(conn)
            conn.close()

    def _batchable(self, job: Job) -> bool:
        if isinstance(job, CallJob) or _streamed(job):
            return False
        return job.bulk or self._q.qsize() >= DEEP_QUEUE

    def _done(self, n: int) -> None:
        with self._count_lock:
            self._outstanding -= n

    def _run_single(self, conn: apsw.Connection, job: Job) -> None:
        """A live change (or a big streamed file, or a call): its own transaction, committed at once."""
        try:
            if isinstance(job, CallJob):
                try:
                    job.fn(conn)
                except Exception:
                    log.exception("writer_call_failed")
                finally:
                    job.done.set()
                return
            self._committed(self._apply_alone(conn, job))
        finally:
            self._done(1)

    def _run_bulk(self, conn: apsw.Connection, first: Job) -> None:
        """Bulk work: one transaction, applying each job as it arrives (overlapping the workers).

        The transaction commits after ``batch_files`` files or ``batch_bytes`` bytes, when the
        queue has been quiet for ``BULK_LINGER_S``, or as soon as a live change or a call
        arrives. There is no savepoint per job: FTS5 flushes its pending terms at every
        savepoint, which would make each file an index segment of its own. If any job fails,
        the whole batch is rolled back and replayed one job per transaction, so a bad file
        costs only itself.
        """
        batch: list[Job] = [first]
        try:
            self._committed(self._bulk_transaction(conn, batch))
        finally:
            self._done(len(batch))

    def _bulk_transaction(self, conn: apsw.Connection, batch: list[Job]) -> list[Applied]:
        applied: list[Applied] = []
        size = getattr(batch[0], "nbytes", 0)
        deadline = time.monotonic() + BULK_MAX_TXN_S  # others (the audit anchor) wait for our lock
        discard_deferred(conn)
        try:
            with immediate(conn):
                _keep(applied, self._apply_one(conn, batch[0]))
                while (len(batch) < self.batch_files and size < self.batch_bytes
                       and time.monotonic() < deadline):
                    job = self._take_for_batch(batch[0].bulk)  # type: ignore[union-attr]
                    if job is None:
                        break
                    batch.append(job)
                    size += getattr(job, "nbytes", 0)
                    _keep(applied, self._apply_one(conn, job))
                _to_outbox(conn, applied)
        except (_Retry, apsw.Error):
            discard_deferred(conn)
            self.counters["batch_replays"] += 1
            applied = [a for job in batch for a in self._apply_alone(conn, job)]
        else:
            self._bulk_dirty = True
        return applied

    def _take_for_batch(self, lingering: bool) -> Job | None:
        """The next job for the open batch, or None to commit it now.

        Bulk batches wait a moment for the next crawled file; a batch of live changes takes only
        what is already queued. A job that cannot join (a call, a streamed file, a live change
        while the queue is shallow) is kept for after the commit.
        """
        try:
            job = self._q.get(timeout=BULK_LINGER_S) if lingering else self._q.get_nowait()
        except queue.Empty:
            return None
        self._release(job)
        if job is None:
            self._stop_seen = True
            return None
        if isinstance(job, CallJob) or _streamed(job) or not (job.bulk or self._q.qsize() >= DEEP_QUEUE - 1):
            self._pending = job
            return None
        return job

    def _committed(self, applied: list[Applied]) -> None:
        self.last_commit = time.monotonic()
        self.counters["commits"] += 1
        if not applied:
            return
        self._dirty_since_optimize = self._bulk_dirty = True
        if self.on_committed is not None:
            try:
                self.on_committed(applied)
            except Exception:
                log.exception("on_committed_failed")

    def _apply_one(self, conn: apsw.Connection, job: Job) -> Applied | None:
        """Inside a batch: any failure aborts the batch so it can be replayed job by job."""
        try:
            return self._dispatch(AgencyStore(conn, job.agency_id), job)  # type: ignore[union-attr]
        except Exception as exc:
            raise _Retry() from exc

    def _apply_alone(self, conn: apsw.Connection, job: Job) -> list[Applied]:
        """One job in its own transaction with its audit record; a failure costs only this job."""
        store = AgencyStore(conn, job.agency_id)  # type: ignore[union-attr]
        try:
            for attempt in range(3):
                try:
                    discard_deferred(conn)
                    with immediate(conn):
                        result = self._dispatch(store, job)
                        done = [result] if result is not None else []
                        _to_outbox(conn, done)
                    return done
                except apsw.BusyError:
                    if attempt == 2:
                        raise
                    self.counters["busy_retries"] += 1
                    time.sleep(0.05 * (attempt + 1))
        except SkipFile as skip:
            return self._skip_alone(conn, store, job, skip.reason)
        except Exception as exc:
            self.counters["job_errors"] += 1
            log.warning("writer_job_failed", job=type(job).__name__, path=_job_path(job),
                        error=f"{type(exc).__name__}: {exc}")
            return self._skip_alone(conn, store, job, f"error:{type(exc).__name__}")
        return []

    def _skip_alone(self, conn: apsw.Connection, store: AgencyStore, job: Job, reason: str) -> list[Applied]:
        """Remember a file that could not be indexed (with its reason and audit record); other jobs: nothing."""
        if not isinstance(job, IndexJob):
            return []
        try:
            discard_deferred(conn)
            with immediate(conn):
                done = [self._record_skip(store, job, reason)]
                _to_outbox(conn, done)
            return done
        except Exception as exc:
            self.counters["job_errors"] += 1
            log.error("writer_skip_failed", path=_job_path(job), reason=reason, error=f"{type(exc).__name__}: {exc}")
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
            data = {"root": job.root, "path": shown_name(job.path), "files": n}
            return Applied(job.agency_id, "delete", data, time.monotonic())
        if isinstance(job, MoveJob):
            if job.tree:
                n = store.move_tree(job.root, job.src, job.dst)
            else:
                n = int(store.move_document(job.root, job.src, job.dst))
            if not n:
                return None
            self.counters["moved"] += n
            data = {"root": job.root, "src": shown_name(job.src), "dst": shown_name(job.dst), "files": n}
            return Applied(job.agency_id, "move", data, time.monotonic())
        return None  # pragma: no cover

    def _index(self, store: AgencyStore, job: IndexJob) -> Applied | None:
        # No re-stat here: a file that changed after it was read has a newer event on its way,
        # and that one brings the index up to date.
        shown = shown_name(job.path)
        if self.is_ignored is not None and self.is_ignored(job.agency_id, job.root, job.path):
            self.counters["ignored_late"] += 1  # the ignore rules changed after the event was queued
            n = int(store.delete_document(job.root, job.path))
            return Applied(job.agency_id, "delete", {"root": job.root, "path": shown, "files": n},
                           job.started) if n else None
        if job.skipped:
            return self._record_skip(store, job, job.skipped)
        n = store.put_document(job.root, job.path, job.size, job.mtime_ns, job.sha256, job.chunks, fresh=job.fresh,
                               defer=True)
        self.counters["indexed"] += 1
        self.counters["chunks"] += n
        self.counters["bytes"] += job.size
        data = {"root": job.root, "path": shown, "sha256": job.sha256, "size": job.size, "chunks": n}
        return Applied(job.agency_id, "index", data, job.started)

    def _record_skip(self, store: AgencyStore, job: IndexJob, reason: str) -> Applied:
        """A file that cannot be indexed is remembered with its reason (no chunks) and counted."""
        store.put_document(job.root, job.path, job.size, job.mtime_ns, job.sha256, (), reason)
        self.counters[f"skipped_{reason}"] += 1
        data: dict[str, object] = {"root": job.root, "path": shown_name(job.path), "reason": reason}
        return Applied(job.agency_id, "skip", data, job.started)

    def _idle(self, conn: apsw.Connection, idle_s: float) -> None:
        """Quiet moments: truncate the WAL after bulk work, merge FTS segments after a longer rest."""
        try:
            if self._bulk_dirty:
                self._bulk_dirty = False
                self._checkpoint(conn)
            if idle_s >= self.optimize_idle_s:
                self._idle_optimize(conn)
        except Exception:
            self.counters["idle_errors"] += 1
            log.exception("writer_idle_work_failed")

    def _checkpoint(self, conn: apsw.Connection) -> None:
        """Copy the WAL into the database and truncate it (readers in the way: it stays for next time)."""
        fine_busy_handler(conn, CHECKPOINT_BUSY_MS)  # a long search must not hold the writer up
        try:
            give_back_free_pages(conn)
            row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except apsw.Error as exc:
            log.warning("wal_checkpoint_failed", error=str(exc))
            return
        finally:
            fine_busy_handler(conn)
        self.counters["checkpoints"] += 1
        if row is not None and row[0]:
            self._bulk_dirty = True  # a reader held it back: try again at the next quiet moment

    def _idle_optimize(self, conn: apsw.Connection) -> None:
        if not self._dirty_since_optimize:
            return
        self._dirty_since_optimize = False
        t0 = time.monotonic()
        with immediate(conn):
            optimize_fts(conn)
        self._checkpoint(conn)
        log.info("fts_optimized", seconds=round(time.monotonic() - t0, 3))


def _job_path(job: Job) -> str:
    path = getattr(job, "path", None) or getattr(job, "src", "")
    return shown_name(str(path))


def _to_outbox(conn: apsw.Connection, applied: list[Applied]) -> None:
    """The end of every transaction body: held-back chunk rows, then the audit records of what
    this transaction changed, committed with it."""
    flush_deferred(conn)
    if applied:
        outbox.put(conn, ((a.agency_id, a.type, a.data) for a in applied))


def _held_bytes(job: Job | None) -> int:
    """Bytes of chunk text a queued job holds in memory (streamed jobs hold none)."""
    if isinstance(job, IndexJob) and isinstance(job.chunks, list):
        return job.nbytes
    return 0


def _keep(applied: list[Applied], result: Applied | None) -> None:
    if result is not None:
        applied.append(result)


def _streamed(job: Job) -> bool:
    """A big file whose chunks are read while inserting: it gets a transaction of its own."""
    return isinstance(job, IndexJob) and not isinstance(job.chunks, list | tuple)
