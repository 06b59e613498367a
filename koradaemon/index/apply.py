"""What each job does to one agency's rows, inside the writer's open transaction.

The writer thread decides transactions (one per live change, many files per bulk batch) and
calls :meth:`JobApplier.apply` for each job; the result is the job's audit record, which the
writer puts in the outbox in the same transaction. A :class:`~.jobs.ReadJob` is read, hashed
and chunked here, on the writer's thread, with the document lookup on the writer's own
connection.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable

import apsw

from . import outbox
from .jobs import Applied, DeleteJob, IndexJob, Job, MoveJob, ReadJob, TouchJob
from .names import shown_name
from .prepare import prepare_index, skip_job
from .store import UNCHANGED, AgencyStore, flush_deferred


class ReadLater(Exception):
    """A file read inside a batch turned out big: its chunks stream in a transaction of their own."""

    def __init__(self, job: IndexJob) -> None:
        super().__init__(job.path)
        self.job = job


class JobApplier:
    def __init__(self, counters: Counter[str], is_ignored: Callable[[str, str, str], bool] | None) -> None:
        self.counters = counters
        self.is_ignored = is_ignored
        self._stores: dict[str, AgencyStore] = {}

    def store(self, conn: apsw.Connection, agency_id: str) -> AgencyStore:
        """The agency's store on ``conn`` (one per agency and connection: no id check per job)."""
        store = self._stores.get(agency_id)
        if store is None or store.conn is not conn:
            store = self._stores[agency_id] = AgencyStore(conn, agency_id)
        return store

    def apply(self, store: AgencyStore, job: Job, *, in_batch: bool = False) -> Applied | None:
        if isinstance(job, ReadJob):
            return self._read(store, job, in_batch)
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

    def _read(self, store: AgencyStore, job: ReadJob, in_batch: bool) -> Applied | None:
        known = None if job.unindexed else store.document(job.root, job.path)
        prepared = prepare_index(job.agency_id, job.root, job.path, os.path.join(job.root_path, job.path), known,
                                 job.params, job.bulk, root_path=job.root_path)
        if prepared is None:
            self.counters["unchanged"] += 1
            return None
        if isinstance(prepared, IndexJob):
            prepared.started, prepared.crawl = job.started, job.crawl
            if in_batch and not isinstance(prepared.chunks, list | tuple):
                raise ReadLater(prepared)
        return self.apply(store, prepared)

    def _index(self, store: AgencyStore, job: IndexJob) -> Applied | None:
        # No re-stat here: a file that changed after it was read has a newer event on its way,
        # and that one brings the index up to date.
        shown = shown_name(job.path)
        if self.is_ignored is not None and self.is_ignored(job.agency_id, job.root, job.path):
            self.counters["ignored_late"] += 1  # the ignore rules changed after the event was queued
            n = int(store.delete_document(job.root, job.path))
            return Applied(job.agency_id, "delete", {"root": job.root, "path": shown, "files": n},
                           job.started, job.crawl) if n else None
        if job.skipped:
            return self.record_skip(store, job, job.skipped)
        n = store.put_document(job.root, job.path, job.size, job.mtime_ns, job.sha256, job.chunks, fresh=job.fresh,
                               defer=True)
        if n == UNCHANGED:
            self.counters["unchanged_late"] += 1  # an earlier job for the same write committed it first
            return None
        self.counters["indexed"] += 1
        self.counters["chunks"] += n
        self.counters["bytes"] += job.size
        data = {"root": job.root, "path": shown, "sha256": job.sha256, "size": job.size, "chunks": n}
        return Applied(job.agency_id, "index", data, job.started, job.crawl)

    def record_skip(self, store: AgencyStore, job: IndexJob, reason: str) -> Applied:
        """A file that cannot be indexed is remembered with its reason (no chunks) and counted."""
        store.put_document(job.root, job.path, job.size, job.mtime_ns, job.sha256, (), reason)
        self.counters[f"skipped_{reason}"] += 1
        data: dict[str, object] = {"root": job.root, "path": shown_name(job.path), "reason": reason}
        return Applied(job.agency_id, "skip", data, job.started, job.crawl)


def skip_of(job: Job, reason: str) -> IndexJob | None:
    """The job that records the file of a failed index job as skipped (None: not a file job, or gone)."""
    if isinstance(job, IndexJob):
        return job
    if isinstance(job, ReadJob):
        try:
            return skip_job(job.agency_id, job.root, job.path, os.path.join(job.root_path, job.path), job.bulk,
                            reason)
        except ValueError:  # a name the system refuses (NUL): nothing on disk to record
            return None
    return None


def job_path(job: Job) -> str:
    path = getattr(job, "path", None) or getattr(job, "src", "")
    return shown_name(str(path))


def to_outbox(conn: apsw.Connection, applied: list[Applied]) -> None:
    """The end of every transaction body: held-back chunk rows, then the audit records of what
    this transaction changed, committed with it."""
    flush_deferred(conn)
    if applied:
        outbox.put(conn, ((a.agency_id, a.type, a.data) for a in applied))


def held_bytes(job: Job | None) -> int:
    """Bytes of chunk text a queued job holds in memory (streamed jobs hold none)."""
    if isinstance(job, IndexJob) and isinstance(job.chunks, list):
        return job.nbytes
    return 0


def listed(result: Applied | None) -> list[Applied]:
    return [result] if result is not None else []


def keep(applied: list[Applied], result: Applied | None) -> None:
    if result is not None:
        applied.append(result)


def streamed(job: Job) -> bool:
    """A big file whose chunks are read while inserting: it gets a transaction of its own."""
    return isinstance(job, IndexJob) and not isinstance(job.chunks, list | tuple)
