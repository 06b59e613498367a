"""Debounce 0: a close is released at once, on the caller's thread; a create waits for its close, a delete
briefly for the file to come back (a branch switch: unlink, create, write, close → one INDEX)."""

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
        d.touch("c.md", DELETE)  # held DELETE_HOLD_S for the file to come back, then released
        wait_for(lambda: any(p == "c.md" for p, _, _ in got), 5, what="held delete released")
        assert got[1][:2] == ("c.md", DELETE)
        d.touch("d.md", INDEX)  # modified, never closed (a writer keeps it open): released after the hold
        wait_for(lambda: any(p == "d.md" for p, _, _ in got), 5, what="held change released")
        assert [p for p, _, _ in got] == ["a.md", "c.md", "d.md"]
    finally:
        d.stop()


def test_zero_debounce_delete_then_new_file_is_one_index() -> None:
    """git's way of updating a file (unlink, create, write, close): one INDEX, no DELETE at all."""
    got: list[tuple[str, ChangeKind]] = []
    d = Debouncer(lambda p, k: got.append((p, k)), debounce_s=0)
    d.start()
    try:
        d.touch("e.md", DELETE)
        d.touch("e.md", INDEX, created=True)
        d.touch("e.md", INDEX)
        d.touch("e.md", INDEX, prompt=True)
        assert got == [("e.md", INDEX)], "released at its close, once, as an INDEX"
        d.touch("f.md", DELETE)  # gone for good
        wait_for(lambda: got[1:] == [("f.md", DELETE)], 5, what="the delete released after its hold")
        assert d.pending() == 0
    finally:
        d.stop()
