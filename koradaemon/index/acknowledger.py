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
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import structlog

from ..errors import KoraError
from ..streams.schema import make_event
from .writer import Applied

log = structlog.get_logger(__name__)



class Chained(Protocol):
    """What an appended audit record tells about itself (``audit.record.Record`` has these)."""

    @property
    def seq(self) -> int: ...
    @property
    def hash(self) -> str: ...


AuditManyFn = Callable[[str, list[tuple[str, dict[str, Any]]]], Sequence[Chained]]  # returns once durable
PublishFn = Callable[[str, dict[str, Any]], object]


class Acknowledger:
    def __init__(self, *, audit: AuditManyFn | None, publish: PublishFn | None, maxsize: int = 16) -> None:
        self.audit = audit
        self.publish = publish
        self._q: queue.Queue[list[Applied] | None] = queue.Queue(maxsize=maxsize)
        self._thread = threading.Thread(target=self._run, name="kora-acks", daemon=True)
        self.latencies: list[float] = []  # file read → committed, i.e. searchable (seconds), recent ones
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
        """One ``append_many`` per agency (one group commit), wait for durability, then publish."""
        by_agency: dict[str, list[Applied]] = {}
        for applied in batch:
            by_agency.setdefault(applied.agency_id, []).append(applied)
        for agency_id, items in by_agency.items():
            chained: Sequence[Chained] = ()
            if self.audit is not None:
                try:
                    chained = self.audit(agency_id, [(a.type, a.data) for a in items])
                except KoraError as exc:
                    self.audit_failures += len(items)
                    log.error("audit_append_failed", agency_id=agency_id, records=len(items), error=str(exc))
                    continue
            self.acknowledged += len(items)
            if self.publish is not None:
                for i, a in enumerate(items):
                    rec = chained[i] if i < len(chained) else None
                    self.publish(agency_id, make_event(a.type, agency_id, a.data, seq=rec.seq if rec else None,
                                                       hash=rec.hash if rec else None))
