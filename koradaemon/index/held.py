"""Holding a database write through a full disk, an I/O error or a busy lock.

Such a refusal says nothing about the data: the transaction is rolled back and tried again, 50 ms
doubling to 2 s, until it goes through. ``stalled`` says why meanwhile (status, one log line each
way). Only a stop ends the wait: the write is then dropped, never recorded as skipped.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

import apsw
import structlog

from ..ioerrors import held_write_reason
from .db import immediate
from .store import discard_deferred

log = structlog.get_logger(__name__)

RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0

T = TypeVar("T")


class Dropped(Exception):
    """The daemon stopped while a write was held: it was never committed (nor acknowledged)."""


class WriteHolder:
    def __init__(self, counters: Counter[str]) -> None:
        self.counters = counters
        self.stalled: str | None = None  # why a write is being held ("disk full: ..."), or None
        self.stopping = threading.Event()

    def run(self, conn: apsw.Connection, what: str, body: Callable[[], T]) -> T:
        """``body`` in one transaction (BEGIN IMMEDIATE), held and retried through passing refusals;
        raises :class:`Dropped` if the daemon stops meanwhile, and anything else ``body`` raises."""
        delay = RETRY_FIRST_S
        while True:
            try:
                discard_deferred(conn)
                with immediate(conn):
                    result = body()
            except Exception as exc:
                reason = held_write_reason(exc)
                if reason is None:
                    raise
                self._hold(what, reason, busy=isinstance(exc, apsw.BusyError), delay=delay)
                delay = min(RETRY_MAX_S, delay * 2)
                continue
            if self.stalled is not None:
                log.warning("index_write_resumed", was=self.stalled)
                self.stalled = None
            return result

    def _hold(self, what: str, reason: str, *, busy: bool, delay: float) -> None:
        if self.stopping.is_set():
            self.counters["dropped_at_stop"] += 1
            log.warning("writer_change_dropped_at_stop", path=what, reason=reason,
                        note="never committed nor acknowledged: the next start's reconcile brings it back")
            raise Dropped(reason)
        if self.stalled != reason:
            log.error("index_write_stalled", reason=reason, path=what,
                      action="the change is held and retried until it goes through; nothing is skipped"
                             " and no lockdown (this is not tampering)")
        self.stalled = reason
        self.counters["busy_retries" if busy else "io_retries"] += 1
        self.stopping.wait(delay)
