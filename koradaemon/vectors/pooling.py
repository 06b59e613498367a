"""Summing a batch's token rows per text, and normalising: the pooling half of the embedder (numpy)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

POOL_ELEMENTS = 1 << 18  # floats gathered and summed at a time when pooling (1,024 tokens at 256 dims)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def pool_sums(table: F32, local: npt.NDArray[np.int32], tok_start: I64, tok_end: I64, out: F32) -> None:
    """``out[i]`` = the sum of ``table``'s rows ``local[tok_start[i]:tok_end[i]]``.

    Each text's rows are gathered into one reused scratch buffer (``take`` with ``out=``; its
    default mode would buffer) and summed there: no temporary per text. With the daemon's
    fixed mmap threshold every temporary over 128 KiB is fresh pages, and a gather per
    passage cost more in page faults than the sums themselves. The sum is a product with a
    vector of ones (BLAS ``gemv``): twice as fast as ``add.reduce`` over axis 0, which walks
    the rows as numpy's generic reduction. Parts stay at POOL_ELEMENTS floats, below the size
    from which OpenBLAS hands a ``gemv`` to its threads (slower here, and CPU time outside
    the vector thread).
    """
    lengths = tok_end - tok_start
    if not len(lengths) or int(lengths.max()) == 0:
        return
    step = max(1, POOL_ELEMENTS // table.shape[1])
    scratch = np.empty((min(int(lengths.max()), step), table.shape[1]), np.float32)
    ones = np.ones(len(scratch), np.float32)
    part_sum = np.empty(table.shape[1], np.float32)
    for i in np.flatnonzero(lengths).tolist():
        a, b = int(tok_start[i]), int(tok_end[i])
        part = scratch[: min(b - a, step)]
        np.take(table, local[a : a + len(part)], axis=0, out=part, mode="clip")
        np.dot(ones[: len(part)], part, out=out[i])
        for c in range(a + step, b, step):  # a text longer than the scratch buffer
            part = scratch[: min(b - c, step)]
            np.take(table, local[c : c + len(part)], axis=0, out=part, mode="clip")
            np.dot(ones[: len(part)], part, out=part_sum)
            out[i] += part_sum


def normalize(matrix: F32) -> F32:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    out: F32 = (matrix / norms).astype(np.float32, copy=False)
    return out
