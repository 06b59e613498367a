"""Debounce 0: a close or a delete is released at once, on the caller's thread; a create waits for its close."""

from __future__ import annotations

import threading

from conftest import wait_for

from koradaemon.watch.changes import ChangeKind
from koradaemon.watch.debounce import Debouncer

INDEX, DELETE = ChangeKind.INDEX, ChangeKind.DELETE


def test_zero_debounce_releases_a_close_at_once_on_the_callers_thread() -> None:
    got: list[tuple[str, ChangeKind, int | None]] = []
    d = Debouncer(lambda p, k: got.append((p, k, threading.get_ident())), debounce_s=0)
    d.start()
    try:
        d.touch("a.md", INDEX, created=True)  # held: its close follows
        d.touch("a.md", INDEX)
        assert got == []
        d.touch("a.md", INDEX, prompt=True)
        assert got == [("a.md", INDEX, threading.get_ident())], "released synchronously, once"
        d.touch("b.md", INDEX, created=True)
        d.touch("b.md", DELETE)  # created and gone before any close: nothing to index or delete
        d.touch("c.md", DELETE)
        assert got[1:] == [("c.md", DELETE, threading.get_ident())]
        d.touch("d.md", INDEX)  # modified, never closed (a writer keeps it open): released after the hold
        wait_for(lambda: any(p == "d.md" for p, _, _ in got), 5, what="held change released")
        assert [p for p, _, _ in got] == ["a.md", "c.md", "d.md"]
    finally:
        d.stop()
