"""The one writer thread that owns the write connection to kora_kernel.db.

Live changes commit one file per transaction so they are searchable at once;
bulk work (start-up crawl, rescans) is batched many files per transaction.
Each job runs in its own savepoint, so one bad file never spoils a batch.

A write the database refuses for a reason outside the data (a full disk, an I/O error, another
connection holding the lock) is held and retried until it goes through: status and the log say
why (``stalled``), nothing is skipped, and the queue behind it waits (back-pressure).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import apsw
import structlog

from .apply import JobApplier, ReadLater, held_bytes, job_path, keep, listed, skip_of, streamed, to_outbox
from .checkpointer import Checkpointer
from .db import BUSY_TIMEOUT_MS, fine_busy_handler, immediate, open_db
from .held import Dropped, WriteHolder
from .jobqueue import JobQueue
from .jobs import Applied, CallJob, Job, SkipFile
from .latency import LatencyWindow
from .quiet import QuietWork
from .store import AgencyStore, discard_deferred

__all__ = ["SWITCH_INTERVAL", "Applied", "SkipFile", "Writer", "WriterStopped"]

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
# A batch of live changes (a burst: a branch switch, a rewrite of many files) waits this long for the
# next change before it commits: the changes of a burst trickle in at the pace of whoever writes
# them, and committing whenever the queue is empty for a moment made transactions of ~30 files,
# whose commits (FTS5 flushes a segment each) cost more than the files (issue 12).
BURST_LINGER_S = 0.02
IDLE_TICK_S = 1.0  # after this long without work: checkpoint the WAL (TRUNCATE) if bulk work ran


class _Retry(Exception):
    """A job failed inside a batch: roll the batch back and replay it job by job."""


class WriterStopped(RuntimeError):
    """The writer thread is gone: nothing more can be committed until a restart."""


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
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        self.db_path = db_path
        self.is_ignored = is_ignored
        self.on_committed = on_committed
        self.batch_files = batch_files
        self.batch_bytes = batch_bytes
        self.optimize_idle_s = optimize_idle_s
        self.busy_timeout_ms = busy_timeout_ms
        self._q: JobQueue[Job | None] = JobQueue(queue_max)
        self._thread = threading.Thread(target=self._run, name="kora-writer", daemon=True)
        self._pending: Job | None = None
        self._stop_seen = False
        self._outstanding = 0
        self._count_lock = threading.Lock()
        self._held = 0
        self._bytes_cv = threading.Condition()
        self.counters: Counter[str] = Counter()
        self._applier = JobApplier(self.counters, is_ignored)
        self.latency = LatencyWindow()  # queued → committed per agency, crawl and live apart (status)
        self.submitted = 0  # jobs ever submitted / finished: status's barrier for "all of it committed"
        self.finished = 0
        self.last_commit: float | None = None
        self._holder = WriteHolder(self.counters)
        self._quiet = QuietWork(self.counters, optimize_idle_s, busy_timeout_ms, self._work_waits)
        self.checkpointer = Checkpointer(db_path)  # WAL checkpoints off this thread (checkpointer.py)

    # -- public -----------------------------------------------------------------
    def start(self) -> None:
        self.checkpointer.start()
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queue a job; blocks when the writer is behind (back-pressure on the workers).

        Besides the job count, the text held by queued jobs is bounded (``QUEUE_TEXT_BYTES``),
        so memory stays flat when many big files arrive at once.
        """
        self.submit_many([job])

    def submit_many(self, jobs: list[Job]) -> None:
        """Queue jobs in this order with one hand-off (one lock, one wake-up of the writer)."""
        held = sum(held_bytes(job) for job in jobs)
        if held:
            with self._bytes_cv:
                while self._held and self._held + held > QUEUE_TEXT_BYTES:
                    self._bytes_cv.wait(1.0)
                    self._check_running()
                self._held += held
        with self._count_lock:
            self._outstanding += len(jobs)
            self.submitted += len(jobs)
        while True:
            try:
                self._q.put_many(jobs, timeout=1.0)
                return
            except queue.Full:
                self._check_running()

    def _check_running(self) -> None:
        """A producer never blocks forever on a writer thread that died (the daemon sees alive() False)."""
        if self._thread.ident is not None and not self._thread.is_alive():
            raise WriterStopped("the writer thread is not running")

    def _release(self, job: Job | None) -> None:
        held = held_bytes(job) if job is not None else 0
        if held:
            with self._bytes_cv:
                self._held -= held
                self._bytes_cv.notify_all()

    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def stalled(self) -> str | None:
        """Why a write is being held and retried ("disk full: ..."), or None."""
        return self._holder.stalled

    def depth(self) -> int:
        """Jobs submitted and not yet committed (and handed on)."""
        return self._outstanding

    def queued(self) -> int:
        """Jobs waiting to be taken up (not yet being applied)."""
        return self._q.qsize()

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

    def stopping(self) -> None:
        """The daemon is stopping: a write held up by a full disk or a lock is dropped instead of
        retried (it was never committed nor acknowledged; the next start's reconcile redoes it)."""
        self._holder.stopping.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._holder.stopping.set()
        if not self._thread.is_alive():
            self.checkpointer.stop(timeout)
            return
        try:
            self._q.put(None, timeout=timeout)
        except queue.Full:
            log.error("writer_stop_queue_full")
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("writer_stop_timeout", timeout=timeout)
        self.checkpointer.stop(timeout)

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
        fine_busy_handler(conn, self.busy_timeout_ms)
        self.checkpointer.hook(conn)
        idle_since = time.monotonic()
        try:
            while True:
                try:
                    job = self._next(IDLE_TICK_S)
                except queue.Empty:
                    self._quiet.run(conn, time.monotonic() - idle_since)
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
            self.checkpointer.stop()  # its checkpoint would keep this last one from truncating the WAL
            self._quiet.checkpoint(conn)
            conn.close()

    def _work_waits(self) -> bool:
        """A job is queued or set aside, or the daemon is stopping: idle work gives way."""
        return self._q.qsize() > 0 or self._pending is not None or self._holder.stopping.is_set()

    def _batchable(self, job: Job) -> bool:
        if isinstance(job, CallJob) or streamed(job):
            return False
        return job.bulk or self._q.qsize() >= DEEP_QUEUE

    def _done(self, n: int) -> None:
        with self._count_lock:
            self._outstanding -= n
            self.finished += n

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
        first = batch[0]
        size = getattr(first, "nbytes", 0)
        deadline = time.monotonic() + BULK_MAX_TXN_S  # others (the audit anchor) wait for our lock
        discard_deferred(conn)
        try:
            with immediate(conn):
                more = self._apply_one(conn, batch, applied)
                while (more and len(batch) < self.batch_files and size < self.batch_bytes
                       and time.monotonic() < deadline):
                    job = self._take_for_batch(first.bulk)
                    if job is None:
                        break
                    batch.append(job)
                    size += getattr(job, "nbytes", 0)
                    more = self._apply_one(conn, batch, applied)
                to_outbox(conn, applied)
        except (_Retry, apsw.Error):
            discard_deferred(conn)
            self.counters["batch_replays"] += 1
            applied = [a for job in batch for a in self._apply_alone(conn, job)]
        else:
            self._quiet.bulk_committed(size // 4096 + len(batch))  # small files: a page each
        return applied

    def _take_for_batch(self, lingering: bool) -> Job | None:
        """The next job for the open batch, or None to commit it now.

        Bulk batches wait a moment for the next crawled file and give way to a live change while
        the queue is shallow; a batch of live changes (a burst) waits ``BURST_LINGER_S`` for the
        next one. A job that cannot join (a call, a streamed file, a live change a bulk batch gives
        way to) is kept for after the commit.
        """
        try:
            job = self._q.get(timeout=BULK_LINGER_S if lingering else BURST_LINGER_S)
        except queue.Empty:
            return None
        self._release(job)
        if job is None:
            self._stop_seen = True
            return None
        joins = job.bulk or not lingering or self._q.qsize() >= DEEP_QUEUE - 1
        if isinstance(job, CallJob) or streamed(job) or not joins:
            self._pending = job
            return None
        return job

    def _committed(self, applied: list[Applied]) -> None:
        self.last_commit = now = time.monotonic()
        self.counters["commits"] += 1
        if not applied:
            return
        for a in applied:
            if a.type in ("index", "skip"):
                self.latency.add(a.agency_id, a.crawl, now - a.started)
        self._quiet.committed()
        if self.on_committed is not None:
            try:
                self.on_committed(applied)
            except Exception:
                log.exception("on_committed_failed")

    def _apply_one(self, conn: apsw.Connection, batch: list[Job], applied: list[Applied]) -> bool:
        """The batch's last job, inside the batch: any failure aborts the batch so it can be replayed
        job by job. False: the batch ends here (a file read here turned out too big to join it: it
        is set aside, in place of its read job, for a transaction of its own after this one)."""
        job = batch[-1]
        try:
            keep(applied, self._applier.apply(self._applier.store(conn, job.agency_id), job,  # type: ignore[union-attr]
                                               in_batch=True))
        except ReadLater as later:
            batch.pop()  # it is done (and counted) as the job set aside
            self._pending = later.job
            return False
        except Exception as exc:
            raise _Retry() from exc
        return True

    def _apply_alone(self, conn: apsw.Connection, job: Job) -> list[Applied]:
        """One job in its own transaction with its audit record; a failure costs only this job."""
        store = self._applier.store(conn, job.agency_id)  # type: ignore[union-attr]
        try:
            return self._transaction(conn, job, lambda: listed(self._applier.apply(store, job)))
        except SkipFile as skip:
            return self._skip_alone(conn, store, job, skip.reason)
        except Exception as exc:
            self.counters["job_errors"] += 1
            log.warning("writer_job_failed", job=type(job).__name__, path=job_path(job),
                        error=f"{type(exc).__name__}: {exc}")
            return self._skip_alone(conn, store, job, f"error:{type(exc).__name__}")

    def _transaction(self, conn: apsw.Connection, job: Job, body: Callable[[], list[Applied]]) -> list[Applied]:
        """``body`` and its audit records in one transaction, held through a full disk or a busy lock
        (see held.py); a write dropped at stop is ``[]``."""
        def with_outbox() -> list[Applied]:
            done = body()
            to_outbox(conn, done)
            return done

        try:
            return self._holder.run(conn, job_path(job), with_outbox)
        except Dropped:
            return []

    def _skip_alone(self, conn: apsw.Connection, store: AgencyStore, job: Job, reason: str) -> list[Applied]:
        """Remember a file that could not be indexed (with its reason and audit record); other jobs: nothing."""
        try:
            target = skip_of(job, reason)
            if target is None:
                return []
            return self._transaction(conn, job, lambda: [self._applier.record_skip(store, target, reason)])
        except Exception as exc:
            self.counters["job_errors"] += 1
            log.error("writer_skip_failed", path=job_path(job), reason=reason, error=f"{type(exc).__name__}: {exc}")
            return []
