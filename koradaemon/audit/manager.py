"""All agencies' audit logs: open and verify them, append, lock down, unlock.

A failure of one agency's log (tampering found on start or on demand, a
failed write or fsync) locks that agency down and leaves the others running.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import apsw
import structlog

from ..errors import AuditError, KoraError, LockdownError, TamperError, UsageError
from ..index.outbox import OUTBOX_KEY
from ..ioerrors import describe_io_error, is_io_error
from .anchor import AnchorStore
from .lockdown import LockdownRegistry
from .quarantine import quarantine_from, quarantined_records
from .record import LOCKDOWN, UNLOCK, Record
from .tail import appended_ids
from .verify import VerifyResult, verify_log
from .writer import AuditLog, CommitFn, Pending

log = structlog.get_logger(__name__)


class AuditManager:
    def __init__(
        self,
        *,
        audit_root: Path,
        db_path: Path,
        agency_ids: Iterable[str],
        lockdown: LockdownRegistry | None = None,
        segment_max_bytes: int = 64 * 1024 * 1024,
        group_commit_ms: float = 10,
        group_commit_records: int = 256,
        full_verify_on_start: bool = True,
        on_commit: CommitFn | None = None,
    ) -> None:
        self.root = audit_root
        self.agency_ids = list(agency_ids)
        self.anchors = AnchorStore(db_path)
        self._owns_lockdown = lockdown is None
        self.lockdown = lockdown if lockdown is not None else LockdownRegistry(db_path)
        self._opts: dict[str, Any] = {"segment_max_bytes": segment_max_bytes, "group_commit_ms": group_commit_ms,
                                      "group_commit_records": group_commit_records,
                                      "full_verify_on_open": full_verify_on_start, "on_commit": on_commit}
        self.logs: dict[str, AuditLog] = {}
        self.last_unlock: dict[str, dict[str, Any]] = {}  # what the last unlock repaired, for its report
        self._lock = threading.RLock()

    # -- opening --------------------------------------------------------------------
    def open_all(self) -> None:
        """Open and verify every agency's log (in full unless ``full_verify_on_start`` is off, then from
        the anchor); a failure locks that agency only."""
        for agency_id in self.agency_ids:
            self.open_agency(agency_id)

    def open_agency(self, agency_id: str) -> bool:
        with self._lock:
            if agency_id in self.logs:
                return True
            if self.lockdown.is_locked(agency_id):
                log.warning("audit_log_locked", agency_id=agency_id, action="not opened until unlock")
                return False
            alog = AuditLog(self.root / agency_id, agency_id, self.anchors, on_failure=self._on_failure, **self._opts)
            try:
                opened = alog.open()
            except TamperError as exc:
                self.lockdown.lock(agency_id, f"tamper: {exc.message}", exc.seq)
                return False
            except (OSError, apsw.Error) as exc:
                if not is_io_error(exc):
                    self.lockdown.lock(agency_id, f"cannot open audit log: {exc}")
                    return False
                # not tampering: no lockdown; the daemon cannot run this agency without its log
                raise AuditError(f"cannot open the audit log of {agency_id!r}: {describe_io_error(exc)}",
                                 hint="free space (or fix the device), then start again") from None
            except KoraError as exc:
                self.lockdown.lock(agency_id, f"cannot open audit log: {exc}")
                return False
            self.logs[agency_id] = alog
            log.info("audit_log_opened", agency_id=agency_id, head_seq=opened.head.seq, checked=opened.checked)
            return True

    def add_agency(self, agency_id: str) -> bool:
        """An agency added by a reload: open (or start, with genesis) its log."""
        with self._lock:
            if agency_id not in self.agency_ids:
                self.agency_ids.append(agency_id)
            return self.open_agency(agency_id)

    def remove_agency(self, agency_id: str, timeout: float = 10.0) -> None:
        """An agency removed by a reload: flush and close its log (the files stay)."""
        with self._lock:
            self._close_log(agency_id, timeout)
            if agency_id in self.agency_ids:
                self.agency_ids.remove(agency_id)

    def _on_failure(self, agency_id: str, reason: str) -> None:
        alog = self.logs.get(agency_id)
        head = alog.head if alog is not None else None
        self.lockdown.lock(agency_id, f"audit write failed: {reason}", head.seq + 1 if head else None)

    # -- appending ------------------------------------------------------------------
    def _log_for(self, agency_id: str) -> AuditLog:
        if self.lockdown.is_locked(agency_id):
            raise LockdownError(f"agency {agency_id!r} is in lockdown",
                                hint=f"see 'koradaemon audit verify --agency {agency_id}'")
        alog = self.logs.get(agency_id)
        if alog is None:
            raise AuditError(f"no open audit log for agency {agency_id!r}")
        return alog

    def append(self, agency_id: str, record_type: str, data: dict[str, Any]) -> Record:
        """Append and wait until durable; raises LockdownError for a locked agency."""
        return self._log_for(agency_id).append(record_type, data)

    def append_nowait(self, agency_id: str, record_type: str, data: dict[str, Any]) -> Pending:
        """Queue one record; ``.result()`` on the handle waits until it is durable."""
        return self._log_for(agency_id).append_nowait(record_type, data)

    def append_many(self, agency_id: str, records: list[tuple[str, dict[str, Any]]]) -> list[Record]:
        """Append several records of one agency and wait until all are durable (one or few fsyncs)."""
        return [p.result() for p in self._log_for(agency_id).append_many(records)]

    def appended_outbox_ids(self, agency_id: str, min_id: int) -> set[int]:
        """Outbox row ids ``>= min_id`` whose records are already in the agency's (open, verified) log."""
        alog = self._log_for(agency_id)
        alog.flush()
        return appended_ids(alog.dir, OUTBOX_KEY, min_id)

    # -- verification ---------------------------------------------------------------
    def verify(self, agency_id: str | None = None) -> dict[str, VerifyResult]:
        """Verify in full from genesis; an open log that fails is locked down at once."""
        ids = self.agency_ids if agency_id is None else [agency_id]
        if agency_id is not None and agency_id not in self.agency_ids:
            raise UsageError(f"unknown agency {agency_id!r}")
        return {a: self._verify_one(a) for a in ids}

    def _verify_one(self, agency_id: str) -> VerifyResult:
        alog = self.logs.get(agency_id)
        head = alog.head if alog is not None and alog.failed is None else None
        if head is not None:
            result = verify_log(self.root / agency_id, agency_id, anchor=head, limit=head)
        else:
            result = verify_log(self.root / agency_id, agency_id, anchor=self.anchors.load(agency_id))
        if not result.ok and head is not None:
            with self._lock:
                self._close_log(agency_id)
                self.lockdown.lock(agency_id, f"tamper: {result.reason}", result.first_bad_seq)
        return result

    # -- lockdown -------------------------------------------------------------------
    def lock(self, agency_id: str, reason: str) -> None:
        """Lock an agency on request; its healthy log records the ``lockdown`` before closing."""
        with self._lock:
            alog = self.logs.get(agency_id)
            seq = None
            if alog is not None and alog.failed is None and not self.lockdown.is_locked(agency_id):
                seq = alog.append(LOCKDOWN, {"reason": reason[:1000]}).seq
            self._close_log(agency_id)
            self.lockdown.lock(agency_id, reason, seq)

    def unlock(self, agency_id: str, reason: str) -> Record:
        """End a lockdown: repair the chain if it is broken (quarantine), re-anchor, append ``unlock``."""
        if not reason.strip():
            raise UsageError("an unlock needs a reason")
        with self._lock:
            state = self.lockdown.get(agency_id)
            if state is None:
                raise UsageError(f"agency {agency_id!r} is not in lockdown")
            self._close_log(agency_id)
            data = self._repair(agency_id)
            data.update(reason=reason[:1000], lockdown_reason=str(state["reason"])[:1000],
                        lockdown_seq=state["seq"], lockdown_since=state["since"])
            alog = AuditLog(self.root / agency_id, agency_id, self.anchors, on_failure=self._on_failure, **self._opts)
            alog.open()
            record = alog.append_internal(UNLOCK, data)
            self.logs[agency_id] = alog
            self.last_unlock[agency_id] = dict(data)
            self.lockdown.unlock(agency_id)
            log.warning("audit_unlock", agency_id=agency_id, seq=record.seq, **{k: v for k, v in data.items()
                                                                             if k != "reason"})
            return record

    def _repair(self, agency_id: str) -> dict[str, Any]:
        agency_dir = self.root / agency_id
        anchor = self.anchors.load(agency_id)
        data: dict[str, Any] = {}
        result = verify_log(agency_dir, agency_id)
        if not result.ok:
            moved = quarantine_from(agency_dir, result)
            data.update(quarantined=moved, first_bad_seq=result.first_bad_seq, bad_reason=(result.reason or "")[:1000],
                        quarantined_records=quarantined_records(agency_dir, moved, result))
        if anchor is not None and anchor != result.head:
            data.update(previous_anchor_seq=anchor.seq, previous_anchor_hash=anchor.hash)
        data.update(last_good_seq=result.head_seq, last_good_hash=result.head_hash)
        head = result.head
        if head is None:
            self.anchors.delete(agency_id)  # nothing good is left: the log restarts at genesis
        elif head != anchor:
            self.anchors.store(agency_id, head)
        return data

    def _close_log(self, agency_id: str, timeout: float = 10.0) -> None:
        alog = self.logs.pop(agency_id, None)
        if alog is not None:
            alog.close(timeout)

    # -- status and shutdown --------------------------------------------------------
    def heads(self) -> dict[str, dict[str, Any] | None]:
        out: dict[str, dict[str, Any] | None] = {}
        for agency_id in self.agency_ids:
            alog = self.logs.get(agency_id)
            head = alog.head if alog is not None else self.anchors.load(agency_id)
            out[agency_id] = None if head is None else {
                "seq": head.seq, "hash": head.hash, "segment": head.segment, "offset": head.offset,
                "open": alog is not None and alog.failed is None, "batches": alog.batches if alog else 0,
                "stalled": alog.stalled if alog is not None else None,
            }
        return out

    def close(self, timeout: float = 10.0) -> None:
        """Flush and fsync every open log, stop the appenders, close the database connections; all
        within ``timeout`` seconds in total."""
        deadline = time.monotonic() + timeout
        with self._lock:
            for agency_id in list(self.logs):
                self._close_log(agency_id, max(0.05, deadline - time.monotonic()))
            self.anchors.close()
            if self._owns_lockdown:
                self.lockdown.close()
