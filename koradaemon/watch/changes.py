"""The change records the watchers hand to the indexer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum


class ChangeKind(Enum):
    """What the consumer must do.

    ``INDEX``: (re)index ``path`` from disk (it may be unchanged: the indexer compares sha256).
    ``DELETE``: forget ``path``.  ``MOVE``: ``path`` was renamed to ``dest_path``.
    ``DELETE_TREE`` / ``MOVE_TREE``: the same for every document under the directory ``path``.
    ``RESCAN``: events were lost for this root; run a reconcile crawl (``path`` is ``""``).
    """

    INDEX = "index"
    DELETE = "delete"
    MOVE = "move"
    DELETE_TREE = "delete_tree"
    MOVE_TREE = "move_tree"
    RESCAN = "rescan"

    @property
    def is_tree(self) -> bool:
        return self in (ChangeKind.DELETE_TREE, ChangeKind.MOVE_TREE)


@dataclass(frozen=True, slots=True)
class FileChange:
    """One change under a watched root.

    ``root`` is the root exactly as configured (relative to the data root); ``path`` and
    ``dest_path`` are POSIX paths relative to that root. ``bulk`` marks changes from a crawl
    (the indexer may batch them in one transaction). ``size`` is the file's size as the crawl saw it
    (0 for watcher events) and ``queued`` the monotonic time the change was made, i.e. queued: what
    ``status`` reports sync progress and per-phase latency from. Neither takes part in equality.
    ``unindexed``: the crawl found no row for the path in the index (a new file: the writer inserts it
    without looking it up first; a row that appeared meanwhile is replaced all the same).
    """

    kind: ChangeKind
    agency_id: str
    root: str
    path: str
    dest_path: str | None = None
    bulk: bool = False
    size: int = field(default=0, compare=False)
    queued: float = field(default_factory=time.monotonic, compare=False)
    unindexed: bool = field(default=False, compare=False)

    @classmethod
    def rescan(cls, agency_id: str, root: str) -> FileChange:
        return cls(ChangeKind.RESCAN, agency_id, root, "")
