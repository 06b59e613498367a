"""In-process event bus feeding the control socket's ``subscribe`` stream.

Events follow the schema of :mod:`koradaemon.streams.schema` (docs/events.md): publishers call
:meth:`EventBus.emit`. Audit records reach only subscriptions that ask for the ``audit`` category.

Publishers never block: each subscription has a bounded buffer, and when a slow subscriber
lets it fill up the oldest events are dropped. The subscriber then receives one
``{"type": "dropped", "count": n}`` marker where the gap is, followed by the newer events.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from .streams.schema import TYPES, audit_event, category, make_event

log = structlog.get_logger(__name__)

Event = dict[str, Any]
Listener = Callable[[str, Event], None]
RawRecord = tuple[int, str, str, str, str, bytes]  # seq, hash, prev, type, ts, data (JSON) of a durable record
AuditListener = Callable[[str, list[RawRecord]], None]
# What a subscription receives unless it asks otherwise: everything but whole audit records.
DEFAULT_CATEGORIES = frozenset(set(TYPES.values()) - {"audit"} | {"other"})
ALL_CATEGORIES = frozenset(set(TYPES.values()) | {"other"})
# Categories whose events are published from their audit record once it is durable.
_FROM_AUDIT = frozenset({"agent", "secret"})


class Subscription:
    """One subscriber's buffer of events for one agency."""

    def __init__(self, bus: EventBus, agency_id: str, maxsize: int, idle_s: float,
                 categories: frozenset[str] = DEFAULT_CATEGORIES) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.bus = bus
        self.categories = categories
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
        self._listeners: tuple[Listener, ...] = ()
        self._audit_listeners: tuple[tuple[AuditListener, Callable[[], bool]], ...] = ()
        self._commit_watchers: tuple[Callable[[str, int], None], ...] = ()
        self.listener_errors = 0
        self.published = 0

    def subscribe(self, agency_id: str, maxsize: int = 1000,
                  categories: Iterable[str] = DEFAULT_CATEGORIES) -> Subscription:
        sub = Subscription(self, agency_id, maxsize, self.idle_s, frozenset(categories))
        with self._lock:
            self._subs.setdefault(agency_id, []).append(sub)
        return sub

    def publish(self, agency_id: str, event: Event) -> int:
        """Deliver a copy of ``event`` to every subscriber of ``agency_id``, then hand it to the
        listeners (outside streams); returns how many subscribers got it."""
        n = self._deliver(agency_id, event)
        for listener in self._listeners:  # outside streams (WebSocket, export): must never block
            try:
                listener(agency_id, event)
            except Exception as exc:  # one broken listener must not stop the publisher
                self.listener_errors += 1
                log.warning("event_listener_failed", agency_id=agency_id, error=repr(exc))
        return n

    def _deliver(self, agency_id: str, event: Event) -> int:
        cat = category(event)
        with self._lock:
            subs = [s for s in self._subs.get(agency_id, ()) if cat in s.categories]
            self.published += 1
        for sub in subs:
            sub._put(dict(event))
        return len(subs)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(agency_id, event)`` for every published event of every agency (audit
        records aside: see :meth:`add_audit_listener`), on the publisher's thread: it must only
        hand the event over, never block."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def add_audit_listener(self, listener: AuditListener, wants: Callable[[], bool]) -> None:
        """Call ``listener(agency_id, records)`` with each durable audit batch (raw records, as the
        log's commit listener gets them) while ``wants()`` is true. It runs on the audit log's
        appender thread: it must only hand the batch over; :func:`audit_events` turns it into
        ``audit`` events on the listener's own thread, off the appender's path."""
        with self._lock:
            self._audit_listeners = (*self._audit_listeners, (listener, wants))

    def remove_audit_listener(self, listener: AuditListener) -> None:
        with self._lock:
            self._audit_listeners = tuple(x for x in self._audit_listeners if x[0] is not listener)

    def add_commit_watcher(self, watcher: Callable[[str, int], None]) -> None:
        """Call ``watcher(agency_id, last_seq)`` after each durable audit batch (on the appender's
        thread: it must only take note, never block)."""
        with self._lock:
            self._commit_watchers = (*self._commit_watchers, watcher)

    def remove_commit_watcher(self, watcher: Callable[[str, int], None]) -> None:
        with self._lock:
            self._commit_watchers = tuple(w for w in self._commit_watchers if w is not watcher)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners = tuple(x for x in self._listeners if x is not listener)

    def emit(self, agency_id: str, event_type: str, data: Mapping[str, Any] | None = None, *,
             seq: int | None = None, hash: str | None = None) -> int:
        """Publish one event of the schema (docs/events.md)."""
        return self.publish(agency_id, make_event(event_type, agency_id, data, seq=seq, hash=hash))

    def wants_audit(self, agency_id: str) -> bool:
        return self._subs_want_audit(agency_id) or any(want() for _, want in self._audit_listeners)

    def _subs_want_audit(self, agency_id: str) -> bool:
        with self._lock:
            return any("audit" in s.categories for s in self._subs.get(agency_id, ()))

    def on_audit_commit(self, agency_id: str, records: list[RawRecord]) -> None:
        """The audit log's commit listener (on its appender thread, right after a durable batch).
        Agent lifecycle and secret records become typed events (with their seq and hash); the
        records reach subscriptions that asked for audit records as ``audit`` events (decoded only
        when one did), and audit listeners as the raw batch (they decode it on their own thread)."""
        for watcher in self._commit_watchers:
            watcher(agency_id, records[-1][0] if records else -1)
        for listener, want in self._audit_listeners:
            try:
                if want():
                    listener(agency_id, records)
            except Exception as exc:  # one broken listener must not stop the log's commits
                self.listener_errors += 1
                log.warning("audit_listener_failed", agency_id=agency_id, error=repr(exc))
        subs_want = self._subs_want_audit(agency_id)
        for record in records:
            seq, digest, _prev, record_type, _ts, data = record
            if TYPES.get(record_type) in _FROM_AUDIT:
                self.emit(agency_id, record_type, json.loads(data), seq=seq, hash=digest)
            if subs_want:
                self._deliver(agency_id, audit_events(agency_id, (record,))[0])

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


def audit_events(agency_id: str, records: Iterable[RawRecord]) -> list[Event]:
    """The ``audit`` events (whole KBL-1 records) of a durable batch."""
    return [audit_event({"v": 1, "seq": seq, "ts": ts, "agency_id": agency_id, "type": record_type,
                         "data": json.loads(data), "prev": prev, "hash": digest})
            for seq, digest, prev, record_type, ts, data in records]
