"""Telling I/O trouble (disk full, a failing device) from everything else, and naming it plainly.

An I/O error is never evidence of tampering: the parts that meet one hold their work, report
"disk full" or "I/O error" in status and the log, and retry until space or the device returns.
"""

from __future__ import annotations

import errno

import apsw

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
IO_TROUBLE = DISK_FULL | frozenset({errno.EIO, errno.EROFS, errno.ENXIO, errno.ENODEV})


def _root(exc: BaseException) -> BaseException:
    """The underlying OS or SQLite error of an exception that wraps one (``raise ... from exc``)."""
    seen = 0
    while exc.__cause__ is not None and not isinstance(exc, OSError | apsw.Error) and seen < 8:
        exc, seen = exc.__cause__, seen + 1
    return exc


def is_io_error(exc: BaseException) -> bool:
    exc = _root(exc)
    if isinstance(exc, OSError):
        return exc.errno in IO_TROUBLE
    return isinstance(exc, apsw.FullError | apsw.IOError | apsw.ReadOnlyError)


def is_disk_full(exc: BaseException) -> bool:
    exc = _root(exc)
    if isinstance(exc, OSError):
        return exc.errno in DISK_FULL
    return isinstance(exc, apsw.FullError)


def describe_io_error(exc: BaseException, *, where: bool = True) -> str:
    """``disk full: ...`` or ``I/O error: ...``, one line (``where``: with the file's name)."""
    exc = _root(exc)
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    name = getattr(exc, "filename", None) if where else None
    place = f" ({name})" if name else ""
    return f"{'disk full' if is_disk_full(exc) else 'I/O error'}: {detail}{place}"


def held_write_reason(exc: BaseException) -> str | None:
    """Why a failed database write should be held and retried rather than given up, or None.

    A full disk, an I/O error, a read-only file or another connection holding the write lock
    past the busy timeout say nothing about the data: the write is kept and tried again.
    """
    exc = _root(exc)
    if isinstance(exc, apsw.BusyError):
        return f"database busy: {exc}"
    if isinstance(exc, apsw.FullError | apsw.IOError | apsw.ReadOnlyError):
        return describe_io_error(exc)
    return None
