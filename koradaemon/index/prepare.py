"""Reading one file into an index job: stat, size limits, binary sniff, sha256, chunks (via mmap).

Small files are chunked here, in the worker thread; big files get a lazy chunk
stream that the writer pulls from inside its transaction, so memory stays flat
however large a file is.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import suppress
from pathlib import Path, PurePosixPath

from ..fsopen import NotRegularFile, open_regular, open_regular_file
from .chunking import ChunkParams, Span, iter_spans, looks_binary
from .derive import derive
from .encoding import count_lines, decode, iter_spans_utf16, utf16_codec
from .jobs import DeleteJob, FsPath, IndexJob, Job, SkipFile, TouchJob
from .rows import ChunkRow, DocRow

__all__ = ["EAGER_LIMIT", "ChunkParams", "prepare_index", "skip_job"]

EAGER_LIMIT = 4 << 20  # files up to this size are chunked in the worker
READ_LIMIT = 256 << 10  # files up to this size are read(); larger ones are mapped
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def _chunk_rows(buf: bytes | mmap.mmap, size: int, params: ChunkParams) -> Iterator[ChunkRow]:
    """Chunks with their text (see :mod:`.encoding`) and the line each starts on."""
    codec = utf16_codec(buf[:2])
    if codec:
        spans: Iterable[Span] = iter_spans_utf16(buf, size, params.chunk_bytes, params.overlap_percent, codec)
    else:
        spans = iter_spans(buf, size, params.chunk_bytes, params.overlap_percent)
    line, prev = 1, 0
    for span in spans:
        line += count_lines(buf[prev : span.offset], codec)
        prev = span.offset
        raw = buf[span.offset : span.end]
        text = decode(raw, codec, span.offset == 0)
        yield span.offset, span.length, hashlib.sha256(raw).hexdigest(), text, line, derive(text)


def _root_of(abs_path: FsPath, rel: str) -> Path:
    """The watched root of ``abs_path`` (which is ``root / rel``)."""
    return Path(abs_path).parents[len(PurePosixPath(rel).parts) - 1]


class LazyRows:
    """A big file's chunk rows, read while the writer inserts them. Each iteration starts over from
    the file, so a transaction the writer retries (disk full, busy) inserts every chunk again."""

    def __init__(self, path: FsPath, rel: str, size: int, mtime_ns: int, params: ChunkParams) -> None:
        self.args = (path, rel, size, mtime_ns, params)

    def __iter__(self) -> Iterator[ChunkRow]:
        return _lazy_rows(*self.args)


def _lazy_rows(path: FsPath, rel: str, size: int, mtime_ns: int, params: ChunkParams) -> Iterator[ChunkRow]:
    """Chunk a big file from a fresh mmap while the writer inserts; refuse if it changed meanwhile."""
    try:
        fh = open_regular_file(_root_of(path, rel), rel)
    except NotRegularFile as exc:  # swapped since the worker read it: skipped, the writer goes on
        raise SkipFile(exc.reason) from None
    with fh:
        st = os.fstat(fh.fileno())
        if st.st_size != size or st.st_mtime_ns != mtime_ns:
            raise SkipFile("changed_while_reading")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            with suppress(AttributeError, OSError):
                mm.madvise(mmap.MADV_SEQUENTIAL)
            yield from _chunk_rows(mm, size, params)


def prepare_index(
    agency_id: str, root: str, rel: str, abs_path: FsPath, known: DocRow | None, params: ChunkParams, bulk: bool,
    *, root_path: FsPath | None = None,
) -> Job | None:
    """Build the job that brings the index in line with the file at ``abs_path`` (None: nothing to do).

    ``root_path``: the watched root (``abs_path`` is ``root_path/rel``), when the caller has it.
    """
    top = root_path if root_path is not None else _root_of(abs_path, rel)
    job = _prepare(agency_id, root, rel, abs_path, top, known, params, bulk)
    if isinstance(job, IndexJob):
        job.fresh = known is None
    return job


def _prepare(
    agency_id: str, root: str, rel: str, abs_path: FsPath, root_path: FsPath, known: DocRow | None,
    params: ChunkParams, bulk: bool,
) -> Job | None:
    try:  # never through a symlink, never a FIFO/socket/device (see fsopen)
        fd = open_regular(root_path, rel)
    except (FileNotFoundError, NotADirectoryError):
        return DeleteJob(agency_id, root, rel, bulk=bulk) if known else None
    except NotRegularFile as exc:
        return _skip_job(agency_id, root, rel, abs_path, known, bulk, exc.reason)
    except (PermissionError, IsADirectoryError, OSError) as exc:
        return _skip_job(agency_id, root, rel, abs_path, known, bulk, f"unreadable:{type(exc).__name__}")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        base = (agency_id, root, rel, abs_path, st.st_size, st.st_mtime_ns)
        if st.st_size > params.max_file_bytes:
            return IndexJob(*base, sha256="", chunks=(), bulk=bulk, skipped="too_large")
        if st.st_size == 0:
            return _maybe_same(known, base, EMPTY_SHA, bulk) or IndexJob(*base, EMPTY_SHA, (), bulk=bulk)
        if st.st_size <= READ_LIMIT:  # small files: one read() is cheaper than mapping them
            data = _read_exactly(fd, st.st_size)
            if data is None:
                return None  # it is being written: the close event that follows brings it back
            return _from_buffer(base, data, known, params, bulk)
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm:
            return _from_buffer(base, mm, known, params, bulk)
    finally:
        os.close(fd)


def _read_exactly(fd: int, size: int) -> bytes | None:
    """The file's ``size`` bytes (one ``read`` as a rule), or None when it is longer or shorter now."""
    data = os.read(fd, size + 1)
    while 0 < len(data) < size:  # a short read (some file systems): go on to the end
        more = os.read(fd, size + 1 - len(data))
        if not more:
            break
        data += more
    return data if len(data) == size else None


def _from_buffer(
    base: tuple[str, str, str, FsPath, int, int], buf: bytes | mmap.mmap, known: DocRow | None,
    params: ChunkParams, bulk: bool,
) -> Job | None:
    size, mtime_ns, abs_path = base[4], base[5], base[3]
    codec = utf16_codec(buf[:2])
    if not codec and looks_binary(buf[:8192]):
        return IndexJob(*base, sha256="", chunks=(), bulk=bulk, skipped="binary")
    digest = hashlib.sha256(buf).hexdigest()
    same = _maybe_same(known, base, digest, bulk)
    if same is not None:
        return same if same is not _UNCHANGED else None
    if size > EAGER_LIMIT:
        return IndexJob(*base, digest, LazyRows(abs_path, base[2], size, mtime_ns, params), bulk=bulk, nbytes=size)
    if not codec and size <= params.chunk_bytes and isinstance(buf, bytes):
        # One chunk, the whole file: its hash is the file's, it starts on line 1 (what _chunk_rows
        # gives, without cutting spans and counting lines).
        text = decode(buf, None, True)
        return IndexJob(*base, digest, [(0, size, digest, text, 1, derive(text))], bulk=bulk, nbytes=size)
    try:
        eager = list(_chunk_rows(buf, size, params))
    except SkipFile as skip:
        return IndexJob(*base, sha256=digest, chunks=(), bulk=bulk, skipped=skip.reason)
    return IndexJob(*base, digest, eager, bulk=bulk, nbytes=size)


_UNCHANGED = TouchJob("", "", "", 0, 0)


def _maybe_same(
    known: DocRow | None, base: tuple[str, str, str, FsPath, int, int], digest: str, bulk: bool
) -> Job | None:
    """Same content as indexed: no rewrite; only refresh size/mtime if they moved."""
    if known is None or known.sha256 != digest or known.skipped:
        return None
    agency_id, root, rel, _, size, mtime_ns = base
    if (known.size, known.mtime_ns) == (size, mtime_ns):
        return _UNCHANGED
    return TouchJob(agency_id, root, rel, size, mtime_ns, bulk=bulk)


def _skip_job(
    agency_id: str, root: str, rel: str, abs_path: FsPath, known: DocRow | None, bulk: bool, reason: str
) -> Job | None:
    """Record the file as skipped with ``reason`` (counted by the writer); what is there is not read."""
    try:
        st = os.lstat(abs_path)
    except OSError:
        return DeleteJob(agency_id, root, rel, bulk=bulk) if known else None
    if stat.S_ISDIR(st.st_mode):
        return None
    return IndexJob(agency_id, root, rel, abs_path, st.st_size, st.st_mtime_ns, "", (), bulk=bulk, skipped=reason)


def skip_job(agency_id: str, root: str, rel: str, abs_path: FsPath, bulk: bool, reason: str) -> IndexJob | None:
    """A job that records ``rel`` as skipped with ``reason`` (None: it is no regular file any more)."""
    try:
        st = os.stat(abs_path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return IndexJob(agency_id, root, rel, abs_path, st.st_size, st.st_mtime_ns, "", (), bulk=bulk, skipped=reason)
