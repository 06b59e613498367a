"""The bounded queue between the indexer workers and the writer thread.

Like ``queue.Queue`` (``put``/``get``/``get_nowait``/``qsize``, raising ``queue.Full`` and
``queue.Empty``), with one difference that matters for speed: a producer blocked on a full
queue is woken when the queue has drained to half, not after every ``get``. Waking a thread
per job makes it take the GIL from the writer between every two SQLite calls; on a busy
two-core machine each such hand-off can cost a scheduler slice.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class JobQueue(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._low = maxsize // 2
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._producers_waiting = 0

    def qsize(self) -> int:
        return len(self._items)

    def put(self, item: T, timeout: float | None = None) -> None:
        """Add ``item``; wait while the queue is full (``queue.Full`` after ``timeout`` seconds)."""
        self.put_many((item,), timeout)

    def put_many(self, items: Sequence[T], timeout: float | None = None) -> None:
        """Add ``items`` in order, all at once, when the queue is not full (it may then hold up to
        ``len(items) - 1`` more than ``maxsize``)."""
        with self._lock:
            if len(self._items) >= self.maxsize:
                deadline = None if timeout is None else time.monotonic() + timeout
                self._producers_waiting += 1
                try:
                    while len(self._items) >= self.maxsize:
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            raise queue.Full
                        self._not_full.wait(remaining)
                finally:
                    self._producers_waiting -= 1
            self._items.extend(items)
            self._not_empty.notify()

    def get(self, timeout: float | None = None) -> T:
        """The oldest item; wait for one (``queue.Empty`` after ``timeout`` seconds)."""
        with self._lock:
            if not self._items:
                deadline = None if timeout is None else time.monotonic() + timeout
                while not self._items:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise queue.Empty
                    self._not_empty.wait(remaining)
            return self._pop()

    def get_nowait(self) -> T:
        with self._lock:
            if not self._items:
                raise queue.Empty
            return self._pop()

    def _pop(self) -> T:
        item = self._items.popleft()
        if self._producers_waiting and len(self._items) <= self._low:
            self._not_full.notify_all()
        return item
