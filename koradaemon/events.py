"""In-process event bus feeding the control socket's ``subscribe`` stream.

Publishers never block: each subscription has a bounded buffer, and when a slow subscriber
lets it fill up the oldest events are dropped. The subscriber then receives one
``{"type": "dropped", "count": n}`` marker where the gap is, followed by the newer events.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import structlog

log = structlog.get_logger(__name__)

Event = dict[str, Any]


class Subscription:
    """One subscriber's buffer of events for one agency."""

    def __init__(self, bus: EventBus, agency_id: str, maxsize: int, idle_s: float) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.bus = bus
        self.agency_id = agency_id
        self.maxsize = maxsize
        self.idle_s = idle_s
        self._buf: collections.deque[Event] = collections.deque()
        self._cond = threading.Condition()
        self._dropped = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _put(self, event: Event) -> None:
        with self._cond:
            if self._closed:
                return
            if len(self._buf) >= self.maxsize:
                self._buf.popleft()
                self._dropped += 1
            self._buf.append(event)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Event | None:
        """Next event (or a ``dropped`` marker); None on timeout or once closed and drained."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._buf and not self._dropped and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if self._dropped:
                count, self._dropped = self._dropped, 0
                return {"type": "dropped", "count": count}
            return self._buf.popleft() if self._buf else None

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> Event | None:
        """The next event; None after ``idle_s`` of silence (so a consumer can check whether it
        should stop: the control server's streaming loop relies on that); StopIteration once closed."""
        event = self.get(self.idle_s)
        if event is None and self._closed:
            raise StopIteration
        return event

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._buf.clear()
            self._cond.notify_all()
        self.bus._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Thread-safe fan-out of events to the subscriptions of their agency."""

    def __init__(self, *, idle_s: float = 0.5) -> None:
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._subs: dict[str, list[Subscription]] = {}
        self.published = 0

    def subscribe(self, agency_id: str, maxsize: int = 1000) -> Subscription:
        sub = Subscription(self, agency_id, maxsize, self.idle_s)
        with self._lock:
            self._subs.setdefault(agency_id, []).append(sub)
        return sub

    def publish(self, agency_id: str, event: Event) -> int:
        """Deliver a copy of ``event`` to every subscriber of ``agency_id``; returns how many."""
        with self._lock:
            subs = list(self._subs.get(agency_id, ()))
            self.published += 1
        for sub in subs:
            sub._put(dict(event))
        return len(subs)

    def subscriber_count(self, agency_id: str | None = None) -> int:
        with self._lock:
            if agency_id is not None:
                return len(self._subs.get(agency_id, ()))
            return sum(len(v) for v in self._subs.values())

    def close(self) -> None:
        """Close every subscription (their iterators end)."""
        with self._lock:
            subs = [s for group in self._subs.values() for s in group]
        for sub in subs:
            sub.close()

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            group = self._subs.get(sub.agency_id)
            if group and sub in group:
                group.remove(sub)
                if not group:
                    del self._subs[sub.agency_id]
