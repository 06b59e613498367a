"""Debouncer: trailing release per path, close re-arms shorter, merging rules, max hold, flush on stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from conftest import wait_for

from koradaemon.watch.changes import ChangeKind
from koradaemon.watch.debounce import Debouncer

INDEX, DELETE = ChangeKind.INDEX, ChangeKind.DELETE


class Sink:
    def __init__(self) -> None:
        self.got: list[tuple[str, ChangeKind, float]] = []
        self.lock = threading.Lock()

    def __call__(self, path: str, kind: ChangeKind) -> None:
        with self.lock:
            self.got.append((path, kind, time.monotonic()))

    def items(self) -> list[tuple[str, ChangeKind]]:
        with self.lock:
            return [(p, k) for p, k, _ in self.got]


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def deb(sink: Sink) -> Iterator[Debouncer]:
    d = Debouncer(sink, debounce_s=0.05, close_delay_s=0.005, max_hold_s=0.5)
    d.start()
    yield d
    d.stop()


def test_burst_becomes_one_release_after_the_last_event(deb: Debouncer, sink: Sink) -> None:
    for _ in range(100):
        deb.touch("a", INDEX)
    t_last = time.monotonic()
    wait_for(sink.items, 2)
    assert sink.items() == [("a", INDEX)]
    assert sink.got[0][2] - t_last >= 0.045
    assert deb.merged == 99


def test_close_releases_after_the_short_delay(deb: Debouncer, sink: Sink) -> None:
    deb.touch("a", INDEX, created=True)
    t_close = time.monotonic()
    deb.touch("a", INDEX, prompt=True)
    wait_for(sink.items, 2)
    assert sink.got[0][2] - t_close < 0.04


def test_created_then_deleted_in_one_window_is_nothing(deb: Debouncer, sink: Sink) -> None:
    deb.touch("tmp", INDEX, created=True)
    deb.touch("tmp", DELETE)
    deb.touch("old", INDEX)
    deb.touch("old", DELETE)  # existed before: the index must forget it
    deb.touch("back", DELETE)
    deb.touch("back", INDEX, created=True)  # deleted and re-created: an update
    wait_for(lambda: len(sink.items()) >= 2, 2)
    deb.stop()
    assert sorted(sink.items()) == [("back", INDEX), ("old", DELETE)]
    assert deb.cancelled == 1


def test_take_removes_pending(deb: Debouncer, sink: Sink) -> None:
    deb.touch("a", INDEX, created=True)
    deb.touch("d/x", INDEX)
    deb.touch("d/y", DELETE)
    deb.touch("dx", INDEX)
    entry = deb.take("a")
    assert entry is not None and entry.fresh and deb.take("a") is None
    assert set(deb.take_under("d")) == {"d/x", "d/y"}
    deb.stop()
    assert sink.items() == [("dx", INDEX)]


def test_a_path_written_without_pause_is_released_by_max_hold(deb: Debouncer, sink: Sink) -> None:
    t0 = time.monotonic()
    while not sink.items():
        deb.touch("log", INDEX)
        time.sleep(0.01)  # the writer's pace, not synchronisation
        assert time.monotonic() - t0 < 3
    assert 0.45 <= sink.got[0][2] - t0 < 1.5


def test_stop_flushes_everything_pending(sink: Sink) -> None:
    d = Debouncer(sink, debounce_s=10, max_hold_s=20)
    d.start()
    d.touch("a", INDEX)
    d.touch("b", DELETE)
    d.stop()
    assert sorted(sink.items()) == [("a", INDEX), ("b", DELETE)]


def test_a_failing_release_does_not_kill_the_timer(sink: Sink) -> None:
    calls: list[str] = []

    def release(path: str, kind: ChangeKind) -> None:
        calls.append(path)
        if path == "bad":
            raise RuntimeError("boom")

    d = Debouncer(release, debounce_s=0.001)
    d.start()
    try:
        d.touch("bad", INDEX)
        wait_for(lambda: calls == ["bad"], 2)
        d.touch("good", INDEX)
        wait_for(lambda: calls == ["bad", "good"], 2)
    finally:
        d.stop()
