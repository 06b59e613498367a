"""Per-path debounce with one timer thread (a heap of due times, not a timer per event).

A path's pending change is released ``debounce_s`` after the last event for it; a
close-after-write re-arms it with the shorter ``close_delay_s`` instead, so a saved file
reaches the queue soon after the close while a burst of writes still yields one change.
Nothing is held longer than ``max_hold_s`` after its first event (a file written
without pause is still indexed now and then).

Merging (per path, while pending): INDEX then DELETE → DELETE, or nothing at all when the
path was *created* during this window (the index cannot know it yet); DELETE then INDEX →
INDEX. Moves are merged by the caller with :meth:`Debouncer.take` / :meth:`take_under`.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from .changes import ChangeKind

log = structlog.get_logger(__name__)

ReleaseFn = Callable[[str, ChangeKind], None]
ZERO_HOLD_S = 0.05  # debounce 0: how long a create/modify waits for its close
# Debounce 0: how long a delete waits for the same file to be created again. A branch switch (git)
# unlinks each file it updates and writes it anew: held this long, the delete and the new file's
# create and close become one INDEX (the document replaced in one step, one audit record) instead of a
# delete, its audit record and a fresh insert.
DELETE_HOLD_S = 0.02


@dataclass(slots=True)
class Pending:
    kind: ChangeKind  # INDEX or DELETE
    fresh: bool  # created during this window: unknown to the index
    first: float
    due: float


class Debouncer:
    def __init__(
        self,
        release: ReleaseFn,
        *,
        debounce_s: float = 0.05,
        close_delay_s: float | None = None,
        max_hold_s: float = 2.0,
        name: str = "kora-debounce",
    ) -> None:
        if debounce_s < 0 or max_hold_s < debounce_s:
            raise ValueError("need 0 <= debounce_s <= max_hold_s")
        self.release = release
        self.debounce_s = debounce_s
        self.close_delay_s = debounce_s / 2 if close_delay_s is None else min(close_delay_s, debounce_s)
        self.max_hold_s = max_hold_s
        self._cond = threading.Condition()
        self._pending: dict[str, Pending] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.released = 0
        self.merged = 0
        self.cancelled = 0

    # -- producers ---------------------------------------------------------------------------
    def touch(self, path: str, kind: ChangeKind, *, prompt: bool = False, created: bool = False) -> None:
        """Record an INDEX or DELETE event for ``path`` (prompt: a close-after-write).

        With no delay at all (``debounce_s`` 0) a close-after-write is released at once on the
        caller's thread (no timer thread hand-off on the live path); a create or modify waits for
        that close, at most ``ZERO_HOLD_S`` (a file written without closing is still indexed); a
        delete waits ``DELETE_HOLD_S`` for the file to come back (then the two are one INDEX).
        """
        hold: float | None = None
        if self.debounce_s == 0 and not self._stopping:
            if prompt:
                with self._cond:
                    self._pending.pop(path, None)
                self._release(path, kind)
                return
            # created/modified: the close-after-write that follows releases it
            hold = DELETE_HOLD_S if kind is ChangeKind.DELETE else ZERO_HOLD_S
        now = time.monotonic()
        with self._cond:
            entry = self._pending.get(path)
            if entry is None:
                entry = Pending(kind, created and kind is ChangeKind.INDEX, now, 0.0)
                self._pending[path] = entry
            else:
                self.merged += 1
                if kind is ChangeKind.DELETE and entry.kind is ChangeKind.INDEX and entry.fresh:
                    del self._pending[path]  # born and gone inside one window
                    self.cancelled += 1
                    return
                if kind is not entry.kind:
                    entry.kind, entry.fresh = kind, False
            delay = hold if hold is not None else self.close_delay_s if prompt else self.debounce_s
            entry.due = min(now + delay, entry.first + self.max_hold_s)
            self._seq += 1
            heapq.heappush(self._heap, (entry.due, self._seq, path))
            if self._heap[0][1] == self._seq:  # new earliest deadline: wake the timer
                self._cond.notify()

    def take(self, path: str) -> Pending | None:
        """Remove and return the pending change of ``path`` (the caller merges it into a move)."""
        with self._cond:
            return self._pending.pop(path, None)

    def take_under(self, prefix: str) -> dict[str, Pending]:
        """Remove and return every pending change below the directory ``prefix``."""
        base = prefix.rstrip("/") + "/"
        with self._cond:
            found = {p: e for p, e in self._pending.items() if p.startswith(base)}
            for p in found:
                del self._pending[p]
            return found

    def pending(self) -> int:
        return len(self._pending)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, *, flush: bool = True, timeout: float = 5.0) -> None:
        """Stop the timer thread; with ``flush`` every pending change is released first."""
        with self._cond:
            self._stopping = True
            if not flush:
                self._pending.clear()
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = self._due_batch()
                while not batch and not self._stopping:
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                    batch = self._due_batch()
                stopping = self._stopping
                if stopping:
                    batch += [(p, e.kind) for p, e in self._pending.items()]
                    self._pending.clear()
            for path, kind in batch:
                self._release(path, kind)
            if stopping:
                return

    def _due_batch(self) -> list[tuple[str, ChangeKind]]:
        now = time.monotonic()
        out: list[tuple[str, ChangeKind]] = []
        while self._heap and self._heap[0][0] <= now:
            due, _, path = heapq.heappop(self._heap)
            entry = self._pending.get(path)
            if entry is not None and entry.due == due:
                del self._pending[path]
                out.append((path, entry.kind))
        if not self._pending:
            self._heap.clear()
        return out

    def _release(self, path: str, kind: ChangeKind) -> None:
        self.released += 1
        try:
            self.release(path, kind)
        except Exception:
            log.exception("debounce_release_failed", path=path, kind=kind.name)
