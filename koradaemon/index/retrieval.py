"""Handing out chunk references and reading them back without copies.

A reference is (root, path, offset, length, sha256). Reading one maps the file
and checks the slice's sha256: a file changed since indexing is reported stale,
never served wrong.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import DataError
from ..fsopen import NotRegularFile, open_regular
from .encoding import decode, utf16_codec
from .names import fs_name


@dataclass(frozen=True)
class ChunkRef:
    root: str
    path: str
    offset: int
    length: int
    sha256: str

    @classmethod
    def from_args(cls, args: dict[str, object]) -> ChunkRef:
        try:
            ref = cls(str(args["root"]), str(args["path"]), int(args["offset"]), int(args["length"]),  # type: ignore[call-overload]
                      str(args["sha256"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"a chunk reference needs root, path, offset, length, sha256: {exc}") from None
        if ref.offset < 0 or ref.length < 0 or len(ref.sha256) != 64:
            raise DataError("a chunk reference has a negative offset/length or a malformed sha256")
        return ref


class StaleChunk(DataError):
    """The file behind a reference changed since it was indexed."""

    code = "stale"


def _open_file(data_root: Path, roots: tuple[str, ...], ref: ChunkRef) -> int:
    """A descriptor of the reference's file, opened safely (see :mod:`koradaemon.fsopen`)."""
    if ref.root not in roots:
        raise DataError(f"{ref.root!r} is not a root of this agency")
    # Component by component from the root: no symlink followed, never blocking on a FIFO;
    # an absolute path, '..' or NUL is a PathError.
    try:
        name = fs_name(ref.path)  # the shown form (non-UTF-8 bytes as \xNN) back to the file's name
    except ValueError as exc:
        raise DataError(f"path {ref.path!r}: {exc}") from None
    try:
        return open_regular(os.path.join(data_root, ref.root), name)  # a str join: no Path per hit
    except (FileNotFoundError, NotADirectoryError):
        raise StaleChunk(f"{ref.root}/{ref.path} no longer exists") from None
    except NotRegularFile as exc:
        raise DataError(f"{ref.root}/{ref.path} is not a regular file ({exc.reason}): not served") from None
    except OSError as exc:
        raise DataError(f"cannot read {ref.root}/{ref.path}: {exc.strerror}") from None


def _check_size(fd: int, ref: ChunkRef) -> None:
    if ref.offset + ref.length > os.fstat(fd).st_size:
        raise StaleChunk(f"{ref.root}/{ref.path} is shorter than the reference: it changed")


def _check_sha(data: bytes | memoryview, ref: ChunkRef) -> None:
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        raise StaleChunk(f"{ref.root}/{ref.path} changed since it was indexed")


@contextmanager
def open_chunk(data_root: Path, roots: tuple[str, ...], ref: ChunkRef) -> Iterator[memoryview]:
    """Yield a read-only memoryview slice of the file's mmap for ``ref``; valid inside the ``with`` only."""
    with os.fdopen(_open_file(data_root, roots, ref), "rb") as fh:
        _check_size(fh.fileno(), ref)
        if ref.length == 0:
            yield memoryview(b"")
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            view = memoryview(mm)[ref.offset : ref.offset + ref.length]
            try:
                _check_sha(view, ref)
                yield view
            finally:
                view.release()


def read_chunk_text(data_root: Path, roots: tuple[str, ...], ref: ChunkRef) -> str:
    """The chunk's text, decoded by the rule used when it was indexed (see :mod:`.encoding`).

    Read with ``pread`` (a search reads up to ten chunks per query: no mapping to set up and tear
    down), checked against the reference's sha256 like :func:`open_chunk`.
    """
    fd = _open_file(data_root, roots, ref)
    try:  # a file shorter than the reference gives a short read: no fstat for that
        if not ref.length:
            _check_size(fd, ref)
        data = os.pread(fd, ref.length, ref.offset) if ref.length else b""
        if len(data) != ref.length:
            raise StaleChunk(f"{ref.root}/{ref.path} is shorter than the reference: it changed")
        if ref.length:  # as open_chunk: an empty reference is served empty
            _check_sha(data, ref)
        head = data[:2] if ref.offset == 0 else os.pread(fd, 2, 0)  # a UTF-16 byte-order mark
    except OSError as exc:
        raise DataError(f"cannot read {ref.root}/{ref.path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return decode(data, utf16_codec(head), ref.offset == 0)


class ChunkText(Protocol):
    """Reads a chunk's text back from its file: raises :class:`StaleChunk` when the file changed
    (or vanished) since indexing, :class:`~koradaemon.errors.DataError` when it may not be served."""

    def __call__(self, ref: ChunkRef, /) -> str: ...


@dataclass(frozen=True)
class FileTexts:
    """The :class:`ChunkText` of one agency: its roots below ``data_root``."""

    data_root: Path
    roots: tuple[str, ...]

    def __call__(self, ref: ChunkRef, /) -> str:
        return read_chunk_text(self.data_root, self.roots, ref)
