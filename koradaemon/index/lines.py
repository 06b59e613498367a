"""Line numbers of a chunk reference, counted on the file without following symlinks."""

from __future__ import annotations

import hashlib
import mmap
import os
import stat
from pathlib import Path

from ..errors import DataError
from ..paths import resolve_under
from .retrieval import ChunkRef, StaleChunk

_PIECE = 1 << 20


def line_range(data_root: Path, roots: tuple[str, ...], ref: ChunkRef) -> tuple[int, int]:
    """1-based first and last line of ``ref`` in its file; :class:`StaleChunk` if the bytes changed."""
    if ref.root not in roots:
        raise DataError(f"{ref.root!r} is not a root of this agency")
    target = resolve_under(data_root / ref.root, ref.path, what="path")
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise StaleChunk(f"{ref.root}/{ref.path} no longer exists") from None
    except OSError as exc:
        raise DataError(f"cannot read {ref.root}/{ref.path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StaleChunk(f"{ref.root}/{ref.path} is no longer a regular file")
        if ref.offset + ref.length > st.st_size:
            raise StaleChunk(f"{ref.root}/{ref.path} is shorter than the reference: it changed")
        if st.st_size == 0:
            return 1, 1
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm:
            before = sum(mm[i : min(i + _PIECE, ref.offset)].count(b"\n") for i in range(0, ref.offset, _PIECE))
            chunk = mm[ref.offset : ref.offset + ref.length]
    finally:
        os.close(fd)
    if hashlib.sha256(chunk).hexdigest() != ref.sha256:
        raise StaleChunk(f"{ref.root}/{ref.path} changed since it was indexed")
    first = before + 1
    inner = chunk.count(b"\n") - (1 if chunk.endswith(b"\n") else 0)
    return first, first + max(inner, 0)
