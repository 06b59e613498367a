"""In-memory pre-filter: packed sign bits of every passage vector, searched by Hamming distance.

sqlite-vec's brute-force ``vec0`` scan costs about 45 ms at 100 k passages on this
machine, and its point look-ups about 0.3 ms each; so the vectors live in a plain table
(exact cosine by ``vec_distance_cosine`` on the candidates) and this index, 32 bytes a
passage at 256 dimensions, picks the candidates: XOR + popcount over a numpy array.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

HIST_STEP = 8192  # distances counted at a time (bincount's intp copy: 64 KiB)


class CodeIndex:
    def __init__(self, code_bytes: int) -> None:
        self.code_bytes = code_bytes
        self._lock = threading.Lock()
        self._ids = np.zeros(0, np.int64)
        self._codes = np.zeros((code_bytes // 8, 0), np.uint64)  # one row per 64-bit word: column-major
        self._pending: list[tuple[int, bytes]] = []
        self._removed: set[int] = set()
        self._scratch: tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint8], npt.NDArray[np.uint16],
                             npt.NDArray[np.bool_]] | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids) + len(self._pending) - len(self._removed)

    def add(self, items: Iterable[tuple[int, bytes]]) -> None:
        with self._lock:
            self._pending.extend(items)

    def remove(self, ids: Iterable[int]) -> None:
        with self._lock:
            self._removed.update(ids)

    def _merge(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64]]:
        """Fold pending additions and removals into the arrays (under the lock)."""
        if self._pending:
            ids = np.fromiter((i for i, _ in self._pending), np.int64, len(self._pending))
            codes = np.frombuffer(b"".join(c for _, c in self._pending), np.uint64).reshape(len(ids), -1).T
            self._ids = np.concatenate((self._ids, ids))
            self._codes = np.concatenate((self._codes, codes), axis=1)
            self._pending = []
        if self._removed:
            keep = ~np.isin(self._ids, np.fromiter(self._removed, np.int64, len(self._removed)))
            self._ids, self._codes = self._ids[keep], np.ascontiguousarray(self._codes[:, keep])
            self._removed = set()
        return self._ids, self._codes

    def candidates(self, code: bytes, count: int) -> list[int]:
        """Ids of the ``count`` passages nearest to ``code`` in Hamming distance.

        Every pass writes into buffers kept for the next query (under the lock): with the
        daemon's fixed 128 KiB mmap threshold (:mod:`.heap`) each temporary of the passage
        count's size would be fresh pages, and a query took about 2,000 page faults
        (5 ms of system time) whenever the thread's heap had no free block that large.
        """
        with self._lock:
            ids, codes = self._merge()
            n = len(ids)
            if count >= n:
                return [int(i) for i in ids]
            if self._scratch is None or len(self._scratch[0]) < n:
                size = n + n // 4  # room for the passages to come
                self._scratch = (np.empty(size, np.uint64), np.empty(size, np.uint8), np.empty(size, np.uint16),
                                 np.empty(size, bool))
            xor, bits, dist, mask = (a[:n] for a in self._scratch)
            query = np.frombuffer(code, np.uint64)
            for word in range(len(query)):
                np.bitwise_xor(codes[word], query[word], out=xor)
                np.bitwise_count(xor, out=bits)
                if word:
                    np.add(dist, bits, out=dist)
                else:
                    np.copyto(dist, bits)
            # Distances are small integers: the cut-off comes from a histogram, not a partial sort
            # (bincount casts to intp: pieces of HIST_STEP keep that temporary small).
            hist = np.zeros(64 * len(query) + 1, np.int64)
            for start in range(0, n, HIST_STEP):
                hist += np.bincount(dist[start : start + HIST_STEP], minlength=len(hist))
            cut = int(np.searchsorted(np.cumsum(hist), count))
            np.less(dist, cut, out=mask)
            below = np.flatnonzero(mask)
            np.equal(dist, cut, out=mask)
            at = np.flatnonzero(mask)[: count - len(below)]
            return [int(i) for i in ids[np.concatenate((below, at))]]
