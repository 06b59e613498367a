"""Which agencies are in lockdown (table ``lockdown``), and who wants to know when that changes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import structlog

from ..errors import DatabaseError
from ..index.db import open_db

log = structlog.get_logger(__name__)

Listener = Callable[[str, bool], None]


class LockdownRegistry:
    """Lockdowns persist in kora_kernel.db, so a restart keeps an agency locked.

    ``lock``/``unlock`` only change the registry and tell the listeners; the
    audit trail of both is kept by :class:`~koradaemon.audit.manager.AuditManager`.
    """

    def __init__(self, db_path: Path) -> None:
        self._conn = open_db(db_path)
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._cache: dict[str, dict[str, Any]] = self._load()

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            rows = self._conn.execute("SELECT agency_id, reason, seq, since FROM lockdown").fetchall()
        except apsw.Error as exc:
            raise DatabaseError(f"cannot read lockdowns: {exc}") from exc
        return {str(a): {"reason": str(r), "seq": s, "since": str(t)} for a, r, s, t in rows}

    def add_listener(self, fn: Listener) -> None:
        with self._lock:
            self._listeners.append(fn)

    def is_locked(self, agency_id: str) -> bool:
        return agency_id in self._cache

    def get(self, agency_id: str) -> dict[str, Any] | None:
        entry = self._cache.get(agency_id)
        return dict(entry) if entry is not None else None

    def locked(self) -> dict[str, dict[str, Any]]:
        """``{agency_id: {"reason", "seq", "since"}}`` for every agency in lockdown."""
        with self._lock:
            return {a: dict(e) for a, e in self._cache.items()}

    def lock(self, agency_id: str, reason: str, seq: int | None = None) -> bool:
        """Lock ``agency_id``; returns False (and changes nothing) when it already is."""
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self._lock:
            if agency_id in self._cache:
                return False
            self._conn.execute(
                "INSERT INTO lockdown(agency_id, reason, seq, since) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(agency_id) DO NOTHING",
                (agency_id, reason, seq, since),
            )
            self._cache[agency_id] = {"reason": reason, "seq": seq, "since": since}
            listeners = list(self._listeners)
        log.error("audit_lockdown", agency_id=agency_id, reason=reason, seq=seq)
        self._notify(listeners, agency_id, True)
        return True

    def unlock(self, agency_id: str) -> bool:
        """Remove the lockdown; returns False when there was none. Callers audit it first."""
        with self._lock:
            if agency_id not in self._cache:
                return False
            self._conn.execute("DELETE FROM lockdown WHERE agency_id = ?", (agency_id,))
            del self._cache[agency_id]
            listeners = list(self._listeners)
        log.warning("audit_unlocked", agency_id=agency_id)
        self._notify(listeners, agency_id, False)
        return True

    @staticmethod
    def _notify(listeners: list[Listener], agency_id: str, locked: bool) -> None:
        for fn in listeners:
            try:
                fn(agency_id, locked)
            except Exception:
                log.exception("lockdown_listener_failed", agency_id=agency_id, locked=locked)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
