"""Bounded work queue between the watchers and the indexer threads, coalescing per path.

Rules (``put``):

* INDEX and DELETE for the same (agency, root, path) share one slot, kept at the place of the
  first arrival (FIFO): INDEX then DELETE → DELETE, DELETE then INDEX → INDEX.
* MOVE a→b while INDEX a is still queued → that slot becomes DELETE a, then INDEX b is queued
  (the source's state in the index is unknown, both steps are always right). A queued DELETE a
  stays. Otherwise the MOVE is queued as is. A move or tree change *seals* the slots it
  touches, so a later event for those paths gets a new slot behind it (order is preserved).
* RESCAN of a root is queued at most once at a time (it only asks for a reconcile crawl).
* Full queue: a change that needs a new slot is dropped and a RESCAN of its root is queued
  instead (counted in ``overflow_rescans`` and logged). The producer never blocks and nothing
  is lost silently: the rescan's reconcile crawl finds the dropped change on disk.

``get`` never hands out a change whose path (or root, for tree changes) another consumer is
still working on; ``task_done`` (called by the same thread) releases it.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import structlog

from .changes import ChangeKind, FileChange

log = structlog.get_logger(__name__)

Key = tuple[str, str, str]
_LOOKAHEAD = 256  # how far get() looks past busy changes for one it may hand out


class _Slot:
    __slots__ = ("change",)

    def __init__(self, change: FileChange) -> None:
        self.change: FileChange | None = change


class WorkQueue:
    def __init__(self, maxsize: int = 10_000) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._cond = threading.Condition()
        self._order: collections.deque[_Slot] = collections.deque()
        self._open: dict[Key, _Slot] = {}
        self._depth = 0
        self._busy_paths: collections.Counter[Key] = collections.Counter()
        self._busy_roots: collections.Counter[tuple[str, str]] = collections.Counter()
        self._busy_trees: collections.Counter[tuple[str, str]] = collections.Counter()
        self._taken: dict[int, FileChange] = {}
        self._rescans: collections.Counter[str] = collections.Counter()  # per agency: RESCANs queued
        self._stopped = False
        self.coalesced = 0
        self.overflow_rescans = 0
        self.dropped = 0

    # -- producers ---------------------------------------------------------------------------
    def put(self, change: FileChange) -> None:
        """Queue ``change`` (never blocks; see the module doc for a full queue)."""
        with self._cond:
            if change.kind in (ChangeKind.INDEX, ChangeKind.DELETE):
                self._put_file(change)
            elif change.kind is ChangeKind.MOVE:
                self._put_move(change)
            elif change.kind is ChangeKind.RESCAN:
                self._put_rescan(change)
            else:
                self._put_tree(change)
            self._cond.notify_all()

    def _put_file(self, change: FileChange) -> bool:
        key = (change.agency_id, change.root, change.path)
        slot = self._open.get(key)
        if slot is not None and slot.change is not None:
            old = slot.change
            slot.change = FileChange(change.kind, old.agency_id, old.root, old.path, None, old.bulk and change.bulk,
                                     change.size or old.size, old.queued)  # waited since the first arrival
            self.coalesced += 1
            return True
        return self._append(change, key)

    def _put_move(self, change: FileChange) -> bool:
        assert change.dest_path is not None
        src = (change.agency_id, change.root, change.path)
        dst = (change.agency_id, change.root, change.dest_path)
        slot = self._open.get(src)
        if slot is not None and slot.change is not None:
            if slot.change.kind is ChangeKind.INDEX:
                slot.change = FileChange(ChangeKind.DELETE, change.agency_id, change.root, change.path,
                                         queued=slot.change.queued)
            self.coalesced += 1
            self._open.pop(src, None)
            self._open.pop(dst, None)
            index = FileChange(ChangeKind.INDEX, change.agency_id, change.root, change.dest_path, None, change.bulk,
                               queued=change.queued)
            return self._append(index, dst)
        self._open.pop(src, None)
        self._open.pop(dst, None)
        return self._append(change, None)

    def _put_rescan(self, change: FileChange) -> bool:
        key = (change.agency_id, change.root, "")
        slot = self._open.get(key)
        if slot is not None and slot.change is not None:
            self.coalesced += 1
            return True
        slot = _Slot(change)  # no sealing: a crawl request is not ordered against file changes
        self._rescans[change.agency_id] += 1
        self._order.append(slot)
        self._open[key] = slot
        self._depth += 1
        return True

    def _put_tree(self, change: FileChange) -> bool:
        self._seal_root(change.agency_id, change.root)
        return self._append(change, None)

    def _seal_root(self, agency_id: str, root: str) -> None:
        for key in [k for k in self._open if k[0] == agency_id and k[1] == root and k[2]]:
            del self._open[key]

    def _append(self, change: FileChange, key: Key | None) -> bool:
        if self._depth >= self.maxsize:
            self.dropped += 1
            rkey = (change.agency_id, change.root, "")
            pending = self._open.get(rkey)
            if pending is None or pending.change is None:
                self.overflow_rescans += 1
                log.warning("work_queue_full", agency_id=change.agency_id, root=change.root, maxsize=self.maxsize)
                self._put_rescan(FileChange.rescan(change.agency_id, change.root))
            return False
        slot = _Slot(change)
        self._order.append(slot)
        if key is not None:
            self._open[key] = slot
        self._depth += 1
        return True

    # -- consumers ---------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> FileChange | None:
        """The next change, or None on timeout or after :meth:`stop`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._stopped:
                change = self._take()
                if change is not None:
                    return change
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return None

    def _take(self) -> FileChange | None:
        while self._order and self._order[0].change is None:
            self._order.popleft()
        for i, slot in enumerate(self._order):
            if i >= _LOOKAHEAD:
                break
            change = slot.change
            if change is None or self._blocked(change):
                continue
            del self._order[i]
            slot.change = None
            self._depth -= 1
            if change.kind is ChangeKind.RESCAN:
                _bump(self._rescans, change.agency_id, -1)
            key = (change.agency_id, change.root, change.path)
            if self._open.get(key) is slot:
                del self._open[key]
            self._mark(change, +1)
            self._taken[threading.get_ident()] = change
            return change
        return None

    def _blocked(self, change: FileChange) -> bool:
        root = (change.agency_id, change.root)
        if change.kind is ChangeKind.RESCAN:
            return False
        if change.kind.is_tree:
            return self._busy_roots[root] > 0
        if self._busy_trees[root] > 0:
            return True
        return any(self._busy_paths[(change.agency_id, change.root, p)] > 0 for p in _paths(change))

    def _mark(self, change: FileChange, delta: int) -> None:
        if change.kind is ChangeKind.RESCAN:
            return
        root = (change.agency_id, change.root)
        _bump(self._busy_roots, root, delta)
        if change.kind.is_tree:
            _bump(self._busy_trees, root, delta)
        else:
            for p in _paths(change):
                _bump(self._busy_paths, (change.agency_id, change.root, p), delta)

    def task_done(self) -> None:
        """Mark the change this thread took last as finished."""
        with self._cond:
            change = self._taken.pop(threading.get_ident(), None)
            if change is not None:
                self._mark(change, -1)
            self._cond.notify_all()

    def stop(self) -> None:
        """Wake every consumer blocked in :meth:`get`; it returns None from now on."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or being worked on; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._depth or self._taken:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    # -- introspection -----------------------------------------------------------------------
    def depth(self) -> int:
        return self._depth

    def pending(self, agency_id: str) -> dict[str, int]:
        """One agency's share of the queue: changes queued, being worked on, and of those the ones a
        crawl queued (``crawl``; files to index with their bytes) and rescans asked for.
        O(depth); for ``status``, not the hot path."""
        out = {"queued": 0, "in_flight": 0, "crawl": 0, "crawl_files": 0, "crawl_bytes": 0, "rescans": 0}
        with self._cond:
            if not self._depth and not self._taken:
                return out
            # under the lock: no change is seen twice or missed while it moves to a worker
            queued = [c for slot in self._order if (c := slot.change) is not None and c.agency_id == agency_id]
            taken = [c for c in self._taken.values() if c.agency_id == agency_id]
        out["queued"], out["in_flight"] = len(queued), len(taken)
        for change in queued + taken:
            if change.kind is ChangeKind.RESCAN:
                out["rescans"] += 1
            elif change.bulk:
                out["crawl"] += 1
                if change.kind is ChangeKind.INDEX:
                    out["crawl_files"] += 1
                    out["crawl_bytes"] += change.size
        return out

    def crawl_pending(self, agency_id: str) -> bool:
        """A rescan of the agency, or a change a crawl queued for it, is queued or being worked on
        (what ``search`` asks: stops at the first one found)."""
        with self._cond:
            if self._rescans.get(agency_id):
                return True
            if any(c.bulk and c.agency_id == agency_id for c in self._taken.values()):
                return True
            return any((c := slot.change) is not None and c.bulk and c.agency_id == agency_id
                       for slot in self._order)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "depth": self._depth,
                "in_flight": len(self._taken),
                "coalesced": self.coalesced,
                "overflow_rescans": self.overflow_rescans,
                "dropped": self.dropped,
            }


def _paths(change: FileChange) -> tuple[str, ...]:
    return (change.path,) if change.dest_path is None else (change.path, change.dest_path)


def _bump(counter: collections.Counter[Any], key: Any, delta: int) -> None:
    value = counter[key] + delta
    if value > 0:
        counter[key] = value
    else:
        counter.pop(key, None)
