"""The audit head anchored in kora_kernel.db (table ``audit_anchor``)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import apsw
import structlog

from ..errors import AuditError, DatabaseError
from ..index.db import open_db

log = structlog.get_logger(__name__)

BUSY_DEADLINE_S = 60.0


@dataclass(frozen=True, slots=True)
class Anchor:
    """The last durable record of a log: its seq and hash, and where its line ends."""

    seq: int
    hash: str
    segment: int
    offset: int


class AnchorStore:
    """Reads and writes anchors on its own connection; one short statement per call."""

    def __init__(self, db_path: Path) -> None:
        self._conn = open_db(db_path)
        self._lock = threading.Lock()

    def load(self, agency_id: str) -> Anchor | None:
        with self._lock:
            try:
                row = self._conn.execute(
                    "SELECT seq, hash, segment, offset FROM audit_anchor WHERE agency_id = ?", (agency_id,)
                ).fetchone()
            except apsw.Error as exc:
                raise DatabaseError(f"cannot read the audit anchor of {agency_id!r}: {exc}") from exc
        if row is None:
            return None
        return Anchor(int(row[0]), str(row[1]), int(row[2]), int(row[3]))

    def store(self, agency_id: str, anchor: Anchor) -> None:
        updated = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self._lock:
            self._store_retrying(agency_id, anchor, updated)

    def _store_retrying(self, agency_id: str, anchor: Anchor, updated: str) -> None:
        """A busy database is contention, not damage: keep trying for ``BUSY_DEADLINE_S`` before failing."""
        deadline = time.monotonic() + BUSY_DEADLINE_S
        delay = 0.01
        while True:
            try:
                self._conn.execute(
                    "INSERT INTO audit_anchor(agency_id, seq, hash, segment, offset, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(agency_id) DO UPDATE SET seq = excluded.seq, "
                    "hash = excluded.hash, segment = excluded.segment, offset = excluded.offset, "
                    "updated = excluded.updated",
                    (agency_id, anchor.seq, anchor.hash, anchor.segment, anchor.offset, updated),
                )
                return
            except apsw.BusyError as exc:
                if time.monotonic() >= deadline:
                    raise AuditError(f"cannot anchor the audit head of {agency_id!r}: {exc}") from exc
                log.warning("audit_anchor_busy", agency_id=agency_id, retry_in_s=delay)
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
            except apsw.Error as exc:
                raise AuditError(f"cannot anchor the audit head of {agency_id!r}: {exc}") from exc

    def delete(self, agency_id: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM audit_anchor WHERE agency_id = ?", (agency_id,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
