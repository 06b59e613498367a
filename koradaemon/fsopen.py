"""Opening files under a root without following symlinks and without blocking.

Every read of a watched file (indexing, ``get_chunk``) and of a state dir (snapshots)
goes through here. The path is walked from the root's directory descriptor one
component at a time (``openat`` with ``O_NOFOLLOW``), the last one is opened
non-blocking and the descriptor is ``fstat``-ed: only a regular file is handed out.
A symlink, FIFO, socket or device node put in place at any moment is never read and
never blocks the thread: :class:`NotRegularFile` says what was found instead.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .errors import PathError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class NotRegularFile(Exception):
    """The path names something other than a regular file; ``reason`` says what."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: not a regular file ({reason})")
        self.name = name
        self.reason = reason


def kind(mode: int) -> str:
    """A short name for a file type: ``file``, ``directory``, ``symlink``, ``fifo``, ``socket``, ``device``."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "other"


def open_leaf(dir_fd: int, name: str) -> int:
    """Open ``name`` inside the folder ``dir_fd`` for reading: a regular file's descriptor or an error.

    The name is ``lstat``-ed first (so a device or FIFO found there is not even opened),
    then opened with ``O_NOFOLLOW | O_NONBLOCK`` and ``fstat``-ed, which closes the window
    between the two: whatever was swapped in meanwhile is refused, never read.
    """
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(name, kind(st.st_mode))
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFile(name, "symlink") from None
        if exc.errno == errno.ENXIO:  # a socket (or a device without a driver) swapped in
            raise NotRegularFile(name, "socket") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegularFile(name, kind(mode))
    return fd


def open_subdir(dir_fd: int, name: str) -> int:
    """Open the folder ``name`` inside ``dir_fd`` without following a symlink."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)  # what is it, then?
    raise NotRegularFile(name, kind(st.st_mode)) from None


def open_root(root: Path) -> int:
    """The root folder itself (configured and checked at load time) as a directory descriptor."""
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def walk_dirs(root_fd: int, parts: tuple[str, ...]) -> int:
    """Descend from ``root_fd`` through ``parts``, each a real folder (no symlink); a new descriptor."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            nxt = open_subdir(fd, part)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def split_relative(rel: str) -> tuple[str, ...]:
    """The components of a relative POSIX path; absolute paths, ``..``, NUL and empty names are refused.

    Unlike :func:`~koradaemon.paths.check_relative` nothing is rewritten: a backslash is an
    ordinary character of a file name here.
    """
    if not rel or "\x00" in rel or rel.startswith("/"):
        raise PathError(f"path: {rel!r} is not a relative path")
    parts = tuple(p for p in rel.split("/") if p not in ("", "."))
    if not parts or ".." in parts:
        raise PathError(f"path: {rel!r} is empty or contains '..'")
    return parts


def open_regular(root: Path, rel: str | PurePosixPath) -> int:
    """A descriptor of the regular file ``root/rel``, no component below ``root`` being a symlink.

    Raises ``FileNotFoundError``/``NotADirectoryError`` when it is not there,
    :class:`NotRegularFile` when something else than a regular file (or a folder on the
    way) is, :class:`~koradaemon.errors.PathError` for an absolute path, ``..`` or NUL.
    """
    parts = split_relative(str(rel))
    root_fd = open_root(root)
    try:
        dir_fd = walk_dirs(root_fd, parts[:-1])
    finally:
        os.close(root_fd)
    try:
        return open_leaf(dir_fd, parts[-1])
    finally:
        os.close(dir_fd)


def open_regular_file(root: Path, rel: str | PurePosixPath) -> BinaryIO:
    """:func:`open_regular` as a binary file object."""
    return os.fdopen(open_regular(root, rel), "rb")
