"""One agency's audit log: a single appender thread doing group commit.

Callers enqueue records; the appender takes what is queued (at most
``group_commit_records``; when the newest record came from a bulk producer,
``append_nowait``/``append_many``, it first waits up to ``group_commit_ms``
for the batch to fill — blocking ``append`` callers never wait for that),
encodes it, writes it with one ``os.write``, makes it durable with one
``fdatasync``, anchors the new head in the database and only then wakes the
callers. A failed write, fsync or anchor is never retried:
the log stops, every waiting caller gets :class:`AuditError` and ``on_failure``
is told (the manager locks the agency down).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from ..errors import AuditError, UsageError
from ..ioerrors import describe_io_error, is_io_error
from .anchor import Anchor, AnchorStore
from .opening import Opened, open_log
from .record import RECOVERY, RESERVED_TYPES, SEGMENT_START, LineEncoder, Record, check_type, data_bytes, now_ts
from .segments import create_segment, open_append, segment_path, write_all

log = structlog.get_logger(__name__)

FailureFn = Callable[[str, str], None]
# Told after each durable batch: (agency_id, [(seq, hash, prev, type, ts, canonical data bytes), ...]).
CommitFn = Callable[[str, list[tuple[int, str, str, str, str, bytes]]], None]


class Pending:
    """A queued record; ``result()`` blocks until it is durable (or the log failed)."""

    __slots__ = ("data", "error", "hash", "log", "nowait", "offset", "prev", "segment", "seq", "ticket", "ts",
                 "type", "waiter")
    seq: int
    hash: str
    prev: str
    ts: str
    segment: int
    offset: int

    def __init__(self, log: AuditLog, record_type: str, data: bytes, ticket: int, nowait: bool) -> None:
        self.log = log
        self.type = record_type
        self.data = data
        self.ticket = ticket
        self.nowait = nowait
        self.error: str | None = None
        self.waiter: threading.Lock | None = None
        # seq, hash, ts, segment, offset are set by the appender before the record is done

    def done(self) -> bool:
        return self.error is not None or self.log._durable >= self.ticket

    def result(self, timeout: float | None = None) -> Record:
        self.log._wait(self, timeout)
        return Record(self.seq, self.hash, self.type, self.ts, self.segment, self.offset)


class AuditLog:
    def __init__(
        self,
        agency_dir: Path,
        agency_id: str,
        anchors: AnchorStore,
        *,
        segment_max_bytes: int = 64 * 1024 * 1024,
        group_commit_ms: float = 10,
        group_commit_records: int = 256,
        max_queue: int = 65_536,
        full_verify_on_open: bool = True,
        on_failure: FailureFn | None = None,
        on_commit: CommitFn | None = None,
    ) -> None:
        if not agency_id or agency_id in (".", "..") or any(c in agency_id for c in "/\\\0"):
            raise UsageError(f"agency id {agency_id!r} cannot name an audit directory")
        self.dir = agency_dir
        self.agency_id = agency_id
        self.anchors = anchors
        self.segment_max_bytes = segment_max_bytes
        self.linger_s = group_commit_ms / 1000
        self.cap = max(1, group_commit_records)
        self.max_queue = max_queue
        self.on_failure = on_failure
        self.on_commit = on_commit
        self.commit_listener_errors = 0
        self.full_verify_on_open = full_verify_on_open
        self.failed: str | None = None
        self.stalled: str | None = None  # why writes are being retried (disk full, I/O error), if they are
        self.batches = 0
        self._enc = LineEncoder(agency_id)
        self._queue: deque[Pending] = deque()
        self._qcond = threading.Condition()
        self._dcond = threading.Condition()
        self._tickets = 0
        self._durable = 0
        self._stopping = False
        self._fd = -1
        self._head: Anchor | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -----------------------------------------------------------------
    def open(self) -> Opened:
        """Verify (in full, or from the anchor), recover a torn tail, then start the appender thread."""
        opened = open_log(self.dir, self.agency_id, self.anchors, full=self.full_verify_on_open)
        self._head = opened.head
        self._fd = open_append(segment_path(self.dir, opened.head.segment))
        self._thread = threading.Thread(target=self._run, name=f"kora-audit-{self.agency_id}", daemon=True)
        self._thread.start()
        if opened.recovered is not None:
            self.append_internal(RECOVERY, {"reason": "torn_tail", **opened.recovered})
        return opened

    def close(self, timeout: float = 10.0) -> None:
        """Write and sync everything queued, then stop the thread and close the segment."""
        with self._qcond:
            self._stopping = True
            self._qcond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("audit_close_timeout", agency_id=self.agency_id)
                return
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def head(self) -> Anchor | None:
        """The last durable record (what is anchored)."""
        return self._head

    # -- appending ------------------------------------------------------------------
    def append(self, record_type: str, data: dict[str, Any], timeout: float | None = None) -> Record:
        """Append one record and return once it is durable and anchored."""
        return self._enqueue(self._public_type(record_type), data, nowait=False).result(timeout)

    def append_nowait(self, record_type: str, data: dict[str, Any]) -> Pending:
        """Queue one record for bulk use; ``.result()`` on the returned handle waits for durability."""
        return self._enqueue(self._public_type(record_type), data, nowait=True)

    def append_many(self, records: list[tuple[str, dict[str, Any]]]) -> list[Pending]:
        """Queue several records at once (all validated first, so a bad one queues none)."""
        raws = [(self._public_type(t), data_bytes(d, self.agency_id, t)) for t, d in records]
        return self._put(raws, nowait=True)

    @staticmethod
    def _public_type(record_type: str) -> str:
        if check_type(record_type) in RESERVED_TYPES:
            raise UsageError(f"record type {record_type!r} is written by the log itself")
        return record_type

    def append_internal(self, record_type: str, data: dict[str, Any]) -> Record:
        return self._enqueue(check_type(record_type), data, nowait=False).result()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything enqueued so far is durable."""
        with self._qcond:
            last = self._tickets
        with self._dcond:
            if not self._dcond.wait_for(lambda: self.failed is not None or self._durable >= last, timeout):
                raise AuditError(f"audit flush of {self.agency_id!r} timed out")
        self._raise_if_failed()

    def _enqueue(self, record_type: str, data: dict[str, Any], *, nowait: bool) -> Pending:
        return self._put([(record_type, data_bytes(data, self.agency_id, record_type))], nowait=nowait)[0]

    def _put(self, raws: list[tuple[str, bytes]], *, nowait: bool) -> list[Pending]:
        out = []
        with self._qcond:
            self._raise_if_failed()
            if self._stopping or self._thread is None:
                raise AuditError(f"audit log of {self.agency_id!r} is not open")
            queue, cap, ticket = self._queue, self.cap, self._tickets
            for record_type, raw in raws:
                if len(queue) >= self.max_queue:
                    self._tickets = ticket
                    self._backpressure()
                ticket += 1
                pending = Pending(self, record_type, raw, ticket, nowait)
                queue.append(pending)
                out.append(pending)
                if len(queue) == 1 or len(queue) == cap:
                    self._qcond.notify_all()
            self._tickets = ticket
        return out

    def _backpressure(self) -> None:
        """Wait (holding nothing but the condition) until the appender has made room."""
        while len(self._queue) >= self.max_queue:
            self._qcond.wait(0.1)
            self._raise_if_failed()
            if self._stopping:
                raise AuditError(f"audit log of {self.agency_id!r} is closing")

    def _wait(self, pending: Pending, timeout: float | None) -> None:
        """Block on a lock of this record's own, released by the appender when the record is done."""
        with self._dcond:
            if not pending.done():
                waiter = pending.waiter = threading.Lock()
                waiter.acquire()
            else:
                waiter = None
        if waiter is not None and not waiter.acquire(timeout=-1 if timeout is None else timeout):
            raise AuditError(f"audit append to {self.agency_id!r} timed out")
        if pending.error is not None:
            raise AuditError(f"audit log of {self.agency_id!r} failed: {pending.error}",
                             hint="the agency is in lockdown; see 'koradaemon status'")

    def _raise_if_failed(self) -> None:
        if self.failed is not None:
            raise AuditError(f"audit log of {self.agency_id!r} failed: {self.failed}",
                             hint="the agency is in lockdown; see 'koradaemon status'")

    # -- the appender thread --------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch: list[Pending] = []
            try:
                batch = self._take()
                if not batch:
                    return
                self._commit_retrying(batch)
            except Exception as exc:
                self._fail(batch, f"{type(exc).__name__}: {exc}")
                return

    def _commit_retrying(self, batch: list[Pending]) -> None:
        """Commit a batch; an I/O error (disk full, EIO, a full database for the anchor) is not
        tampering: undo the partial write, report ``stalled``, retry until it goes through. The
        records stay unacknowledged meanwhile, so nothing acknowledged is ever lost."""
        delay = 0.05
        while True:
            head = self._head
            try:
                self._commit(batch)
            except Exception as exc:
                if not is_io_error(exc):
                    raise
                self._undo_partial(head)
                reason = describe_io_error(exc)
                if self.stalled != reason:
                    log.error("audit_write_stalled", agency_id=self.agency_id, reason=reason,
                              action="records held in memory, retrying; no lockdown (this is not tampering)")
                self.stalled = reason
                with self._qcond:
                    if self._stopping and delay >= 1.0:
                        raise
                    self._qcond.wait(delay)
                delay = min(2.0, delay * 2)
                continue
            if self.stalled is not None:
                log.warning("audit_write_resumed", agency_id=self.agency_id, was=self.stalled)
                self.stalled = None
            return

    def _undo_partial(self, head: Anchor | None) -> None:
        """Cut the segment back to the last durable record (a failed write may have left part of a batch)."""
        if head is None or self._fd < 0:
            return
        try:
            if os.fstat(self._fd).st_size > head.offset:
                os.ftruncate(self._fd, head.offset)
        except OSError as exc:
            log.error("audit_truncate_failed", agency_id=self.agency_id, error=str(exc))

    def _take(self) -> list[Pending]:
        with self._qcond:
            queue = self._queue
            while not queue and not self._stopping:
                self._qcond.wait()
            if queue and len(queue) < self.cap and self.linger_s > 0 and queue[-1].nowait and not self._stopping:
                # bulk producers keep producing: give the batch a moment to fill up
                deadline = time.monotonic() + self.linger_s
                while len(queue) < self.cap and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._qcond.wait(left)
            batch = self._pop()
            self._qcond.notify_all()
            return batch

    def _pop(self) -> list[Pending]:
        q = self._queue
        return [q.popleft() for _ in range(min(len(q), self.cap))]

    def _commit(self, batch: list[Pending]) -> None:
        head = self._head
        assert head is not None
        if head.offset >= self.segment_max_bytes:
            head = self._rotate(head)
        ts = now_ts()
        enc = self._enc.encode_parts
        seq, prev, offset = head.seq + 1, head.hash, head.offset
        parts: list[bytes] = []
        segment = head.segment
        for p in batch:
            p.prev = prev
            prev, size = enc(parts, seq, ts, p.type, p.data, prev)
            offset += size
            p.seq, p.hash, p.ts, p.segment, p.offset = seq, prev, ts, segment, offset
            seq += 1
        write_all(self._fd, b"".join(parts))
        os.fdatasync(self._fd)
        new_head = Anchor(seq - 1, prev, head.segment, offset)
        self.anchors.store(self.agency_id, new_head)
        self._head = new_head
        self.batches += 1
        self._release(batch, durable=batch[-1].ticket)
        if self.on_commit is not None:
            self._tell_commit(batch)

    def _tell_commit(self, batch: list[Pending]) -> None:
        """Hand the durable records to the listener (live events); its failure never stops the log."""
        assert self.on_commit is not None
        try:
            self.on_commit(self.agency_id, [(p.seq, p.hash, p.prev, p.type, p.ts, p.data) for p in batch])
        except Exception as exc:  # a listener must not break the audit log
            self.commit_listener_errors += 1
            log.warning("audit_commit_listener_failed", agency_id=self.agency_id, error=repr(exc))

    def _release(self, batch: list[Pending], durable: int | None = None) -> None:
        with self._dcond:
            if durable is not None:
                self._durable = durable
            for p in batch:
                if p.waiter is not None:
                    p.waiter.release()
            self._dcond.notify_all()

    def _rotate(self, head: Anchor) -> Anchor:
        os.fdatasync(self._fd)
        number = head.segment + 1
        data = data_bytes({"segment": number, "prev_segment": head.segment}, self.agency_id, SEGMENT_START)
        line, digest = self._enc.encode(head.seq + 1, now_ts(), SEGMENT_START, data, head.hash)
        fd = create_segment(self.dir, number, line)
        new_head = Anchor(head.seq + 1, digest, number, len(line))
        try:
            self.anchors.store(self.agency_id, new_head)
        except BaseException:  # e.g. the database is full: as if the rotation never began
            os.close(fd)
            segment_path(self.dir, number).unlink(missing_ok=True)
            raise
        os.close(self._fd)
        self._fd = fd
        self._head = new_head
        log.info("audit_segment_rotated", agency_id=self.agency_id, segment=number, seq=new_head.seq)
        return new_head

    def _fail(self, batch: list[Pending], reason: str) -> None:
        """Stop for good: lock down first (on_failure), then wake every waiter with the error."""
        log.error("audit_write_failed", agency_id=self.agency_id, reason=reason, action="no retry; lockdown")
        with self._qcond:
            self.failed = reason
            stranded = batch + list(self._queue)
            self._queue.clear()
            self._qcond.notify_all()
        if self.on_failure is not None:
            try:
                self.on_failure(self.agency_id, reason)
            except Exception:
                log.exception("audit_failure_callback_failed", agency_id=self.agency_id)
        for p in stranded:
            p.error = reason
        self._release(stranded)
