"""The indexed files of one root, held compactly while a reconcile crawl compares the disk with them.

A restart over a large root holds every indexed path during its crawl. A dict of path → (size,
mtime_ns) costs about 185 bytes a file (key, tuple, two ints, table slot); here the paths sit in
one sorted list (8 bytes a slot besides the string), sizes and mtimes in two ``array('q')`` and
"seen" in a ``bytearray``: about 90 bytes a file, found by binary search.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator


class KnownFiles:
    __slots__ = ("_mtimes", "_paths", "_seen", "_sizes")

    def __init__(self, rows: Iterable[tuple[str, int, int]]) -> None:
        """``rows``: (path in ``os.fsdecode`` form, size, mtime_ns), best already sorted by path."""
        paths: list[str] = []
        sizes, mtimes = array("q"), array("q")
        for path, size, mtime in rows:
            paths.append(path)
            sizes.append(size)
            mtimes.append(mtime)
        if any(paths[i] > paths[i + 1] for i in range(len(paths) - 1)):  # rare: names sorted otherwise
            order = sorted(range(len(paths)), key=paths.__getitem__)
            paths = [paths[i] for i in order]
            sizes = array("q", (sizes[i] for i in order))
            mtimes = array("q", (mtimes[i] for i in order))
        self._paths, self._sizes, self._mtimes = paths, sizes, mtimes
        self._seen = bytearray(len(paths))

    @classmethod
    def of(cls, known: dict[str, tuple[int, int]]) -> KnownFiles:
        return cls((p, s, m) for p, (s, m) in known.items())

    def __len__(self) -> int:
        return len(self._paths)

    def take(self, path: str) -> tuple[int, int] | None:
        """(size, mtime_ns) of an indexed ``path``, marking it found on disk; None if not indexed."""
        i = bisect_left(self._paths, path)
        if i == len(self._paths) or self._paths[i] != path:
            return None
        self._seen[i] = 1
        return self._sizes[i], self._mtimes[i]

    def not_taken(self) -> Iterator[str]:
        """The indexed paths :meth:`take` was never asked about (in path order)."""
        seen, paths = self._seen, self._paths
        start = 0
        while (i := seen.find(0, start)) >= 0:
            yield paths[i]
            start = i + 1
