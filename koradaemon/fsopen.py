"""Opening files under a root without following symlinks and without blocking.

Every read of a watched file (indexing, ``get_chunk``) and of a state dir (snapshots)
goes through here. The path is walked from the root's directory descriptor one
component at a time (``openat`` with ``O_NOFOLLOW``), the last one is opened
non-blocking and the descriptor is ``fstat``-ed: only a regular file is handed out.
A symlink, FIFO, socket or device node put in place at any moment is never read and
never blocks the thread: :class:`NotRegularFile` says what was found instead. On Linux
5.6 and later the walk is one ``openat2`` call (``RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH``);
elsewhere, or when a filter refuses that call, the walk is done component by component.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat
import sys
from collections.abc import Callable
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
    then opened with ``O_NOFOLLOW | O_NONBLOCK | O_NOCTTY`` and ``fstat``-ed, which closes the
    window between the two: whatever was swapped in meanwhile is refused, never read. (The
    ``openat2`` path skips the ``lstat``: a FIFO opens at once non-blocking, and only root can
    make a device node.)
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
    return _regular_only(fd, name)


def open_subdir(dir_fd: int, name: str) -> int:
    """Open the folder ``name`` inside ``dir_fd`` without following a symlink."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)  # what is it, then?
    if stat.S_ISLNK(st.st_mode):
        raise NotRegularFile(name, "symlink") from None
    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), name) from None


def open_root(root: str | Path) -> int:
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
    split = rel.split("/")
    if "" not in split and "." not in split and ".." not in split:  # the usual path: nothing to drop
        return tuple(split)
    parts = tuple(p for p in split if p not in ("", "."))
    if not parts or ".." in parts:
        raise PathError(f"path: {rel!r} is empty or contains '..'")
    return parts


# -- openat2(2): the whole walk in one system call where the kernel has it (Linux >= 5.6) ----------
_SYS_OPENAT2 = 437  # on the architectures below (the unified table); others (mips, alpha) use the walk
_OPENAT2_MACHINES = {"x86_64", "aarch64", "arm64", "riscv64", "ppc64le", "ppc64", "s390x", "armv7l", "armv6l",
                     "i686", "i386", "loongarch64"}
_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS, _RESOLVE_BENEATH = 0x02, 0x04, 0x08


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _load_openat2() -> Callable[[int, bytes, int], int] | None:
    """``openat2`` with no symlink allowed anywhere and nothing above the folder, or None where it
    is missing (other systems, old kernels, a seccomp filter that refuses it)."""
    if not sys.platform.startswith("linux") or platform.machine() not in _OPENAT2_MACHINES:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    # Declared argument types: ctypes converts plain ints and bytes itself (no wrapper objects per call).
    syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    hows: dict[int, tuple[_OpenHow, int]] = {}  # one open_how per flags value, kept alive here

    def openat2(dir_fd: int, name: bytes, flags: int) -> int:
        known = hows.get(flags)
        if known is None:
            how = _OpenHow(flags, 0, _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS | _RESOLVE_BENEATH)
            known = hows[flags] = (how, ctypes.addressof(how))
        fd = int(syscall(_SYS_OPENAT2, dir_fd, name, known[1], ctypes.sizeof(_OpenHow)))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), name.decode(errors="surrogateescape"))
        return fd

    try:
        os.close(openat2(AT_FDCWD, b".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    except OSError:
        return None
    return openat2


AT_FDCWD = -100
_openat2 = _load_openat2()


def _open_fast(root_fd: int, parts: tuple[str, ...]) -> int:
    """One ``openat2`` for the whole relative path, then the same ``fstat`` check as :func:`open_leaf`."""
    assert _openat2 is not None
    try:
        fd = _openat2(root_fd, os.fsencode("/".join(parts)), _FILE_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EXDEV):  # a link, a socket, '..' out
            return _open_walk(root_fd, parts)  # the walk says exactly which, or opens nothing
        raise
    return _regular_only(fd, parts[-1])


def _open_walk(root_fd: int, parts: tuple[str, ...]) -> int:
    dir_fd = walk_dirs(root_fd, parts[:-1])
    try:
        return open_leaf(dir_fd, parts[-1])
    finally:
        os.close(dir_fd)


def open_regular(root: str | Path, rel: str | PurePosixPath) -> int:
    """A descriptor of the regular file ``root/rel``, no component below ``root`` being a symlink.

    Raises ``FileNotFoundError``/``NotADirectoryError`` when it is not there,
    :class:`NotRegularFile` when something else than a regular file (or a folder on the
    way) is, :class:`~koradaemon.errors.PathError` for an absolute path, ``..`` or NUL.
    """
    parts = split_relative(str(rel))
    root_fd = open_root(root)
    try:
        return _open_fast(root_fd, parts) if _openat2 is not None else _open_walk(root_fd, parts)
    finally:
        os.close(root_fd)


def open_regular_file(root: str | Path, rel: str | PurePosixPath) -> BinaryIO:
    """:func:`open_regular` as a binary file object."""
    return os.fdopen(open_regular(root, rel), "rb")


def _regular_only(fd: int, name: str) -> int:
    """``fd`` if it is a regular file; otherwise it is closed and :class:`NotRegularFile` names its kind."""
    try:
        mode = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegularFile(name, kind(mode))
    return fd
