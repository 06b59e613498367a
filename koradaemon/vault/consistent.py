"""What a snapshot leaves out, and SQLite databases copied whole: never a torn page, never a stray WAL.

* Exclude globs (``vault.exclude``): a pattern without ``/`` matches a file or folder name anywhere, one
  with ``/`` the path relative to the state folder; a trailing ``/`` matches folders only.
* A file starting with the SQLite header is copied through SQLite's online backup API (a read
  transaction: one consistent state, WAL content included) into a scratch file, and that copy is
  packed; its ``-wal``/``-shm``/``-journal`` companions are left out, since the copy holds their content.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import apsw
import structlog

from ..errors import SnapshotError

log = structlog.get_logger(__name__)

SQLITE_MAGIC = b"SQLite format 3\x00"
SIDECARS = ("-wal", "-shm", "-journal")
BUSY_TIMEOUT_MS = 10_000

class Excluder:
    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = [(p.rstrip("/"), p.endswith("/")) for p in patterns if p.strip("/")]

    def match(self, rel: str, *, is_dir: bool) -> bool:
        name = rel.rsplit("/", 1)[-1]
        for pat, dir_only in self.patterns:
            if dir_only and not is_dir:
                continue
            if fnmatch.fnmatchcase(rel if "/" in pat else name, pat):
                return True
        return False


def is_sqlite(path: Path) -> bool:
    """True when ``path`` is a regular file starting with the SQLite header (symlinks are not followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return os.read(fd, len(SQLITE_MAGIC)) == SQLITE_MAGIC
    finally:
        os.close(fd)


def sqlite_names(folder: Path, names: Iterable[str]) -> set[str]:
    """The databases among ``names`` (those with a companion, or anything with the header)."""
    return {n for n in names if not n.endswith(SIDECARS) and is_sqlite(folder / n)}


def is_companion(name: str, databases: set[str]) -> bool:
    return any(name.endswith(s) and name[: -len(s)] in databases for s in SIDECARS)


def backup_copy(db: Path, dest: Path) -> None:
    """Copy the database ``db`` into the new file ``dest`` through SQLite's backup API.

    The source is opened read-only (it is never checkpointed or changed); companions SQLite had to
    create for that get the database's owner, so an agent under its own uid can still open it.
    """
    try:
        st = os.stat(db, follow_symlinks=False)
    except OSError as exc:
        raise SnapshotError(f"cannot copy database {db.name}: {exc.strerror}") from None
    before = {s for s in SIDECARS if os.path.lexists(f"{db}{s}")}
    try:
        src = apsw.Connection(os.fspath(db), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            src.setbusytimeout(BUSY_TIMEOUT_MS)
            out = apsw.Connection(os.fspath(dest))
            try:
                # One step over all pages: one read transaction, so a writer in another process
                # (which would restart a stepwise backup after each commit) cannot starve it; under
                # WAL the writer is not blocked meanwhile.
                with out.backup("main", src, "main") as backup:
                    backup.step(-1)
                    if not backup.done:
                        raise SnapshotError(f"cannot copy database {db.name}: the backup did not finish")
            finally:
                out.close()
        finally:
            src.close()
    except apsw.Error as exc:
        raise SnapshotError(f"cannot copy database {db.name} consistently: {exc}") from exc  # a full disk shows
    finally:
        _restore_owner(db, st, before)
    os.chmod(dest, st.st_mode & 0o777)


def _restore_owner(db: Path, st: os.stat_result, before: set[str]) -> None:
    for suffix in set(SIDECARS) - before:
        side = f"{db}{suffix}"
        with contextlib.suppress(OSError):
            if os.stat(side, follow_symlinks=False).st_uid != st.st_uid:
                os.chown(side, st.st_uid, st.st_gid, follow_symlinks=False)
