"""EventBus: agency fan-out, drop-oldest with a marker, closing wakes consumers."""

from __future__ import annotations

import threading

import pytest
from conftest import wait_for

from koradaemon.events import EventBus


def test_events_reach_only_their_agency() -> None:
    bus = EventBus()
    a, b = bus.subscribe("alpha"), bus.subscribe("beta")
    assert bus.publish("alpha", {"type": "index", "path": "x.md"}) == 1
    assert a.get(1) == {"type": "index", "path": "x.md"}
    assert b.get(0.01) is None
    a.close()
    b.close()
    assert bus.subscriber_count() == 0


def test_published_event_is_copied() -> None:
    bus = EventBus()
    sub = bus.subscribe("alpha")
    event = {"type": "index"}
    bus.publish("alpha", event)
    event["type"] = "changed"
    assert sub.get(1) == {"type": "index"}
    sub.close()


def test_slow_subscriber_drops_oldest_with_marker() -> None:
    bus = EventBus()
    sub = bus.subscribe("alpha", maxsize=3)
    for i in range(10):
        bus.publish("alpha", {"n": i})
    got = [sub.get(1) for _ in range(4)]
    assert got == [{"type": "dropped", "count": 7}, {"n": 7}, {"n": 8}, {"n": 9}]
    assert sub.get(0.01) is None
    sub.close()


def test_publisher_never_blocks_on_full_subscriber() -> None:
    bus = EventBus()
    sub = bus.subscribe("alpha", maxsize=1)
    done = threading.Event()

    def publish_many() -> None:
        for i in range(10000):
            bus.publish("alpha", {"n": i})
        done.set()

    t = threading.Thread(target=publish_many)
    t.start()
    t.join(10)
    assert done.is_set()
    assert sub.get(1) == {"type": "dropped", "count": 9999}
    assert sub.get(1) == {"n": 9999}
    sub.close()


def test_iteration_yields_idle_ticks_and_ends_on_close() -> None:
    bus = EventBus(idle_s=0.01)
    sub = bus.subscribe("alpha")
    it = iter(sub)
    assert next(it) is None  # idle tick
    bus.publish("alpha", {"n": 1})
    assert next(it) == {"n": 1}
    closer = threading.Timer(0.05, bus.close)
    closer.start()
    rest = list(it)
    closer.join()
    assert all(item is None for item in rest)
    assert sub.closed and bus.subscriber_count("alpha") == 0


def test_blocked_get_wakes_on_publish() -> None:
    bus = EventBus()
    sub = bus.subscribe("alpha")
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(sub.get(10)))
    t.start()
    wait_for(lambda: bus.subscriber_count("alpha") == 1)
    bus.publish("alpha", {"n": 1})
    t.join(10)
    assert got == [{"n": 1}]
    sub.close()


def test_maxsize_must_be_positive() -> None:
    with pytest.raises(ValueError):
        EventBus().subscribe("alpha", maxsize=0)
