"""What one indexer thread holds back for the writer: read jobs, and bulk files being prepared in
the prep worker process (:mod:`.prepclient`), handed over in the order their changes came.

Files of bulk work go to the prep worker in batches (``BATCH_FILES`` files or ``BATCH_BYTES``
bytes); up to ``IN_FLIGHT`` batches are out at once, so the worker prepares the next while the
writer inserts the last. Answers become jobs here and go to the writer in order with the jobs
held around them. Whatever the worker cannot give (it died, the file needs streaming, an error
there) is prepared in this thread with the same code (:func:`~.prepare.prepare_index`).
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from .chunking import ChunkParams
from .jobs import DeleteJob, IndexJob, Job, ReadJob, TouchJob
from .prepare import prepare_index, skip_job
from .prepclient import PrepWorker
from .prepworker import Result
from .rows import DocRow
from .writer import Writer

log = structlog.get_logger(__name__)

BATCH_FILES = 64
BATCH_BYTES = 1 << 20
REQUEST_BYTES = 16 << 10  # names per request: far below a pipe's buffer, so a send never waits on an answer
IN_FLIGHT = 2
LOOK_EVERY = 8  # hand_over calls between two looks for the worker's answers while work is queued
WRITER_SHORT = 8  # jobs queued at the writer below which it shares the preparing when the worker is behind
IDLE_POLL_S = 0.002  # nothing queued: how often to look for new work while waiting for the worker
HANDOFF_JOBS = 32  # read jobs handed to the writer at once while more work is queued


@dataclass(slots=True)
class Item:
    agency_id: str
    root: str
    rel: str
    top: str
    known: DocRow | None
    params: ChunkParams
    bulk: bool
    started: float
    crawl: bool


@dataclass(slots=True)
class Batch:
    items: list[Item] = field(default_factory=list)
    nbytes: int = 0
    names: int = 0
    generation: int | None = None  # sent to this worker process; None: not sent (prepare here)


class Handoff:
    def __init__(self, writer: Writer, counters: Counter[str], stop: threading.Event, depth: Callable[[], int],
                 *, prep: bool) -> None:
        self.writer = writer
        self.counters = counters
        self.depth = depth
        self.stop = stop
        self.prep = PrepWorker(counters, stop) if prep else None
        self._held: list[Job | Batch] = []
        self._open: Batch | None = None
        self._sent_now = False  # a batch went out since hand_over last looked
        self._calls = 0  # hand_over calls since it last looked

    def warm(self) -> None:
        """Start the worker now (the indexer thread starts: a start-up crawl follows at once), so its
        interpreter is up by the first batch; without work it ends after its idle time."""
        if self.prep is not None:
            self.prep.warm()

    def hold(self, job: Job) -> None:
        self._held.append(job)

    def _holds(self, agency_id: str, root: str, rel: str) -> bool:
        for h in self._held:
            if isinstance(h, Batch):
                if any(it.rel == rel and it.root == root and it.agency_id == agency_id for it in h.items):
                    return True
            elif getattr(h, "path", None) == rel and h.root == root and h.agency_id == agency_id:  # type: ignore[union-attr]
                return True
        return False

    def offload(self, item: Item, size: int) -> bool:
        """Prepare ``item`` in the prep worker; False: no worker here, the caller prepares it."""
        if self.prep is None or not self.prep.usable or not item.top.startswith("/"):
            return False  # (the worker runs in "/": a relative root would name other files there)
        if self._open is None and self._worker_behind():
            # The writer prepares this one (a read job): at once when nothing held is for its file.
            self.counters["prep_shared"] += 1
            job = ReadJob(item.agency_id, item.root, item.rel, item.top, item.params, item.bulk, item.known is None,
                          item.started, item.crawl)
            if self._holds(item.agency_id, item.root, item.rel):
                self._held.append(job)
            else:
                self._submit([job])
            return True
        batch = self._open
        if batch is None:
            batch = self._open = Batch()
        batch.items.append(item)
        batch.nbytes += size
        batch.names += len(item.rel) + len(item.top)
        if len(batch.items) >= BATCH_FILES or batch.nbytes >= BATCH_BYTES or batch.names >= REQUEST_BYTES:
            self._send()
        return True

    def _send(self) -> None:
        batch, self._open = self._open, None
        if batch is None:
            return
        assert self.prep is not None
        batch.generation = self.prep.send([_request(it) for it in batch.items])
        self.counters["prep_batches"] += 1
        self._held.append(batch)
        self._sent_now = True

    def hand_over(self, *, force: bool) -> None:
        """Give the writer what is ready, in order; everything when ``force``. When nothing more is
        queued, wait for the worker's answers too, unless new work arrives first: then the change
        just done is marked done with work still queued, so the queue never looks idle while files
        are out at the worker (status, the drain at stop)."""
        idle = not force and self.depth() == 0
        if force or idle:
            self._send()
        if not self._held:
            return
        if not (force or idle or self._sent_now) and self._calls < LOOK_EVERY:
            self._calls += 1  # between sends, look for answers (a select) only now and then
            return
        self._calls = 0
        self._sent_now = False
        out: list[Job] = []
        resolved = False
        while self._held:
            head = self._held[0]
            if isinstance(head, Batch):
                if not (force or self._sent() > IN_FLIGHT or self._ready(head)):
                    if not idle:
                        break
                    if not self._ready(head, IDLE_POLL_S) and self.depth() > 0 and not self.stop.is_set():
                        idle = False  # new work: take it first
                        break
                    continue
                out.extend(self._resolve(head))
                resolved = True
            else:
                out.append(head)
            self._held.pop(0)
        if not (force or idle or resolved) and len(out) < HANDOFF_JOBS:
            self._held[:0] = out  # read jobs wait for more company
            return
        self._submit(out)

    def _submit(self, out: list[Job]) -> None:
        if out:
            try:
                self.writer.submit_many(out)
            except Exception:
                self.counters["errors"] += len(out)
                log.exception("indexer_handoff_failed", jobs=len(out))

    def idle(self) -> None:
        if self.prep is not None:
            self.prep.tick()

    def close(self, timeout: float) -> None:
        if self.prep is not None:
            self.prep.close(timeout)

    def _worker_behind(self) -> bool:
        """The worker has all the batches it may have and none is answered yet, while the writer has
        little queued: this file is better prepared on this side (the writer reads small files)."""
        if self.writer.queued() >= WRITER_SHORT or self._sent() < IN_FLIGHT:
            return False
        head = next(h for h in self._held if isinstance(h, Batch) and h.generation is not None)
        return not self._ready(head)

    def _sent(self) -> int:
        return sum(1 for h in self._held if isinstance(h, Batch) and h.generation is not None)

    def _ready(self, batch: Batch, wait: float = 0.0) -> bool:
        return (batch.generation is None or self.stop.is_set()
                or (self.prep is not None and self.prep.ready(batch.generation, wait)))

    def _resolve(self, batch: Batch) -> list[Job]:
        results: list[Result] | None = None
        if batch.generation is not None and self.prep is not None:
            results = self.prep.receive(batch.generation, len(batch.items))
        jobs: list[Job] = []
        for i, item in enumerate(batch.items):
            got = results[i] if results is not None else ("R", "not_sent")
            try:
                job = _job(item, got) if not (isinstance(got, tuple) and got[0] == "R") else self._here(item)
                if job is None:
                    self.counters["unchanged"] += 1
            except Exception as exc:  # as a change failing in the indexer thread: recorded as skipped
                self.counters["errors"] += 1
                log.warning("indexer_change_failed", path=item.rel, error=f"{type(exc).__name__}: {exc}")
                job = _skip(item, f"error:{type(exc).__name__}")
            if job is not None:
                jobs.append(job)
        if results is not None:
            self.counters["prepared_by_worker"] += len(batch.items)
        return jobs

    def _here(self, item: Item) -> Job | None:
        self.counters["prepared_here"] += 1
        job = prepare_index(item.agency_id, item.root, item.rel, os.path.join(item.top, item.rel), item.known,
                            item.params, item.bulk, root_path=item.top)
        if isinstance(job, IndexJob):
            job.started, job.crawl = item.started, item.crawl
        return job


def _request(it: Item) -> tuple[object, ...]:
    k = it.known
    known = None if k is None else (k.id, k.root, k.path, k.size, k.mtime_ns, k.sha256, k.skipped)
    p = it.params
    return (it.top, it.rel, known, it.bulk, p.chunk_bytes, p.overlap_percent, p.max_file_bytes)


def _job(it: Item, got: Result) -> Job | None:
    """The job the worker's answer stands for (what prepare_index gave there)."""
    if got is None:
        return None
    assert isinstance(got, tuple)
    tag = got[0]
    if tag == "I":
        size, mtime_ns, sha256, chunks, skipped, nbytes = got[1:]
        job = IndexJob(it.agency_id, it.root, it.rel, os.path.join(it.top, it.rel), int(size),  # type: ignore[call-overload]
                       int(mtime_ns), str(sha256), chunks, bulk=it.bulk, skipped=skipped,  # type: ignore[call-overload,arg-type]
                       nbytes=int(nbytes), fresh=it.known is None, started=it.started, crawl=it.crawl)  # type: ignore[call-overload]
        return job
    if tag == "T":
        return TouchJob(it.agency_id, it.root, it.rel, int(got[1]), int(got[2]), bulk=it.bulk)  # type: ignore[call-overload]
    if tag == "D":
        return DeleteJob(it.agency_id, it.root, it.rel, bulk=it.bulk)
    raise ValueError(f"unknown answer {tag!r}")


def _skip(it: Item, reason: str) -> Job | None:
    try:
        return skip_job(it.agency_id, it.root, it.rel, os.path.join(it.top, it.rel), it.bulk, reason)
    except (OSError, ValueError):
        return None
