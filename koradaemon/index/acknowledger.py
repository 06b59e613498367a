"""Acknowledging committed index changes: the audit outbox drained into the KBL-1 log, then events.

The writer commits a change together with its audit record (a row of ``audit_outbox``, see
:mod:`.outbox`) and only tells this thread that there is something to drain; it never waits
for the log. This thread appends the waiting rows, one ``append_many`` per agency (one group
commit), waits until they are durable, deletes them and only then publishes the events that
subscribers see as acknowledgements.

Each record carries its row id (``data.outbox_id``). Rows of an agency are checked against the
tail of its log before that agency's first append (on start, or after its log was unavailable):
a crash between the append and the delete never appends a record twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import apsw
import structlog

from ..ioerrors import held_write_reason
from ..streams.schema import make_event
from . import outbox
from .db import open_db
from .jobs import Applied

log = structlog.get_logger(__name__)



class Chained(Protocol):
    """What an appended audit record tells about itself (``audit.record.Record`` has these)."""

    @property
    def seq(self) -> int: ...
    @property
    def hash(self) -> str: ...


AuditManyFn = Callable[[str, list[tuple[str, dict[str, Any]]]], Sequence[Chained]]  # returns once durable
AppendedFn = Callable[[str, int], set[int]]  # outbox ids >= min_id already in the agency's log
PublishFn = Callable[[str, dict[str, Any]], object]

DRAIN_ROWS = 4096
RETRY_S = 1.0  # how often rows of an agency whose log is unavailable are tried again


class Acknowledger:
    def __init__(
        self,
        *,
        db_path: Path,
        audit: AuditManyFn | None,
        appended: AppendedFn | None = None,
        publish: PublishFn | None = None,
    ) -> None:
        self.db_path = db_path
        self.audit = audit
        self.appended = appended
        self.publish = publish
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="kora-acks", daemon=True)
        self.acknowledged = 0
        self.duplicates_skipped = 0
        self.audit_failures = 0
        self.errors = 0
        self._submitted = 0  # outbox rows the writer reported committed
        self._done = 0  # of those, how many a finished drain pass has handled
        self._unscanned: set[str] | None = None  # agencies whose rows were not checked against their log yet
        self._blocked: set[str] = set()
        self._parked_logged: set[str] = set()
        self._logged: dict[str, set[int]] = {}  # per agency: row ids the scan found in its log (this pass)
        self.stalled: str | None = None  # why draining the outbox fails ("disk full: ..."), or None

    # -- life cycle -------------------------------------------------------------------
    def drain_on_start(self) -> int:
        """Before anything else runs: append what a previous run committed but did not log."""
        conn = open_db(self.db_path, migrate=False)
        try:
            n = self._pass(conn)
        finally:
            conn.close()
        log.info("audit_outbox_drained_on_start", records=n, already_logged=self.duplicates_skipped)
        return n

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Drain what is committed, then stop."""
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("acks_stop_timeout", timeout=timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- from the writer (never blocks) ------------------------------------------------
    def submit(self, applied: list[Applied]) -> None:
        self._submitted += len(applied)
        self._wake.set()

    def depth(self) -> int:
        """Committed records not yet handled (appended, or parked for an agency whose log is down)."""
        return max(0, self._submitted - self._done)

    # -- the thread ---------------------------------------------------------------------
    def _run(self) -> None:
        try:
            conn = open_db(self.db_path, migrate=False)
        except Exception as exc:  # the thread ends; alive() says so
            log.error("acks_cannot_start", error=str(exc))
            return
        try:
            failed = False
            while True:
                self._wake.wait(RETRY_S if self._blocked or failed else None)
                self._wake.clear()
                stopping = self._stopping
                try:
                    self._pass(conn)
                except Exception as exc:  # one bad pass (a busy or full database, a bad row) must not end the thread
                    failed = True
                    self._pass_failed(exc)
                else:
                    failed = False
                    if self.stalled is not None:
                        log.warning("audit_outbox_resumed_after_error", was=self.stalled)
                        self.stalled = None
                if stopping:
                    return
        finally:
            conn.close()

    def _pass_failed(self, exc: Exception) -> None:
        """After a failed pass: check every agency's rows against its log again before appending
        (the records may be in the log while deleting their rows failed: a full disk), and retry."""
        self.errors += 1
        self._unscanned = None
        self._logged.clear()
        reason = held_write_reason(exc)
        if reason is None:
            log.exception("acks_pass_failed")
        elif reason != self.stalled:
            log.error("audit_outbox_stalled", reason=reason,
                      action="the rows stay in the outbox and are retried; no lockdown (this is not tampering)")
        self.stalled = reason
        time.sleep(0.1)

    def _pass(self, conn: apsw.Connection) -> int:
        """Append every waiting row of every agency whose log takes records; returns rows appended."""
        mark = self._submitted  # rows reported before this point are committed, so visible below
        was_blocked, self._blocked = self._blocked, set()
        if self._unscanned is None:
            self._unscanned = {str(r[0]) for r in conn.execute("SELECT DISTINCT agency_id FROM audit_outbox")}
        total = 0
        while True:
            rows = outbox.pending(conn, limit=DRAIN_ROWS, skip=self._blocked)
            if not rows:
                break
            by_agency: dict[str, list[outbox.OutboxRow]] = {}
            for row in rows:
                by_agency.setdefault(row.agency_id, []).append(row)
            done: list[int] = []
            for agency_id, items in by_agency.items():
                done += self._append(agency_id, items)
            outbox.delete(conn, done)
            total += len(done)
        self._logged.clear()
        for agency_id in was_blocked - self._blocked:
            log.info("audit_outbox_resumed", agency_id=agency_id)
        self._done = max(self._done, mark)
        return total

    def _append(self, agency_id: str, items: list[outbox.OutboxRow]) -> list[int]:
        """Append one agency's rows; returns the ids that are now in its log (to delete)."""
        assert self._unscanned is not None
        try:
            if agency_id in self._unscanned:
                found = self.appended(agency_id, items[0].id) if self.appended is not None else set()
                self._unscanned.discard(agency_id)
                self._logged[agency_id] = found
                if found:
                    self.duplicates_skipped += len(found)
                    log.warning("outbox_rows_already_logged", agency_id=agency_id, rows=len(found))
            already = self._logged.get(agency_id, set())
            todo = [r for r in items if r.id not in already]
            chained: Sequence[Chained] = ()
            if todo and self.audit is not None:
                chained = self.audit(agency_id, [(r.type, r.record_data()) for r in todo])
        except Exception as exc:  # locked down, log failed, disk full: keep the rows, try again later
            self._blocked.add(agency_id)
            self._unscanned.add(agency_id)
            self.audit_failures += 1
            if agency_id not in self._parked_logged:
                self._parked_logged.add(agency_id)
                log.warning("audit_outbox_parked", agency_id=agency_id, rows=len(items), error=str(exc))
            return []
        self._parked_logged.discard(agency_id)
        self.acknowledged += len(todo)
        if self.publish is not None:
            for i, r in enumerate(todo):  # events of the schema, with their audit record's seq and hash
                rec = chained[i] if i < len(chained) else None
                try:
                    self.publish(agency_id, make_event(r.type, agency_id, r.data, seq=rec.seq if rec else None,
                                                       hash=rec.hash if rec else None))
                except Exception:
                    log.exception("acks_publish_failed", agency_id=agency_id)
        return [r.id for r in items]
