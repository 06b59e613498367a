"""Acknowledging committed index changes: audit records, then live events, off the writer's thread.

The writer commits first (so a change is searchable at once), then hands the
batch here. This thread appends one audit record per change, waits for the
group commit to make them durable, and only then publishes the events that
subscribers see as acknowledgements.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from .errors import KoraError
from .index.writer import Applied

log = structlog.get_logger(__name__)

AuditNowaitFn = Callable[[str, str, dict[str, Any]], Any]  # returns a pending with .result(timeout)
PublishFn = Callable[[str, dict[str, Any]], object]


class Acknowledger:
    def __init__(self, *, audit: AuditNowaitFn | None, publish: PublishFn | None, maxsize: int = 1024) -> None:
        self.audit = audit
        self.publish = publish
        self._q: queue.Queue[list[Applied] | None] = queue.Queue(maxsize=maxsize)
        self._thread = threading.Thread(target=self._run, name="kora-acks", daemon=True)
        self.latencies: list[float] = []  # commit → searchable (seconds), last few thousand
        self.acknowledged = 0
        self.audit_failures = 0
        self._outstanding = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def submit(self, applied: list[Applied]) -> None:
        now = time.monotonic()
        for a in applied:
            if a.type == "index":
                self.latencies.append(now - a.started)
        if len(self.latencies) > 4096:
            del self.latencies[:2048]
        with self._lock:
            self._outstanding += 1
        self._q.put(applied)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def depth(self) -> int:
        """Batches submitted and not yet acknowledged."""
        return self._outstanding

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch = self._q.get()
            if batch is None:
                return
            try:
                self._ack_batch(batch)
            finally:
                with self._lock:
                    self._outstanding -= 1

    def _ack_batch(self, batch: list[Applied]) -> None:
        """Enqueue every record of the batch (one group commit), wait for durability, then publish."""
        pending: list[tuple[Applied, Any]] = []
        for applied in batch:
            try:
                p = self.audit(applied.agency_id, applied.type, applied.data) if self.audit else None
            except KoraError as exc:
                self.audit_failures += 1
                log.error("audit_append_failed", agency_id=applied.agency_id, type=applied.type, error=str(exc))
                continue
            pending.append((applied, p))
        for applied, p in pending:
            if p is not None:
                try:
                    p.result(timeout=60)
                except (KoraError, TimeoutError) as exc:
                    self.audit_failures += 1
                    log.error("audit_append_failed", agency_id=applied.agency_id, type=applied.type, error=str(exc))
                    continue
            self.acknowledged += 1
            if self.publish is not None:
                self.publish(applied.agency_id, {"type": applied.type, **applied.data})
