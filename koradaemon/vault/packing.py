"""A folder tree as a tar stream and back, refusing anything that could escape the folder.

Packing walks the folder without following symlinks (symlinks, FIFOs, sockets and devices
are skipped, counted and logged, never opened for reading);
unpacking accepts only plain relative names, regular files and directories, and never
overwrites: it is meant for an empty temporary folder.
"""

from __future__ import annotations

import os
import secrets
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO

import structlog

from ..errors import SnapshotError
from ..fsopen import NotRegularFile, kind, open_leaf
from ..fsutil import fsync_dir, fsync_file
from .consistent import Excluder, backup_copy, is_companion, sqlite_names

log = structlog.get_logger(__name__)

COPY_BLOCK = 64 * 1024


class _Exactly:
    """Reads exactly ``size`` bytes from a file that may change underneath: cut or zero-padded."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self._fh, self._left, self.changed = fh, size, False

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = self._fh.read(n)
        if len(data) < n:
            self.changed = True
            data += bytes(n - len(data))
        self._left -= len(data)
        return data


def pack_dir(src: Path, out: Any, *, exclude: Sequence[str] = (), scratch: Path | None = None) -> dict[str, int]:
    """Write the tree under ``src`` as a tar stream to ``out`` (anything with ``write``).

    The walk holds a descriptor per folder (``os.fwalk``) and opens each entry relative to
    it without following symlinks (:mod:`koradaemon.fsopen`): a symlink, FIFO, socket or
    device node, found there or swapped in at any moment, is skipped and counted
    (``skipped`` and ``skipped_<kind>``), never read, never waited on. Names matching
    ``exclude`` are left out (see :mod:`.consistent`). With a ``scratch`` folder, SQLite
    databases are packed from a backup-API copy made there, without their WAL/SHM/journal.
    """
    counts = {"files": 0, "dirs": 0, "skipped": 0, "bytes": 0, "excluded": 0, "sqlite": 0}
    skip = Excluder(exclude)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames, dir_fd in os.fwalk(src, follow_symlinks=False):
            base = Path(dirpath)
            rel_dir = base.relative_to(src)
            kept = sorted(d for d in dirnames if not skip.match((rel_dir / d).as_posix(), is_dir=True))
            files = sorted(f for f in filenames if not skip.match((rel_dir / f).as_posix(), is_dir=False))
            counts["excluded"] += len(dirnames) + len(filenames) - len(kept) - len(files)
            dirnames[:] = kept  # fwalk does not descend into excluded folders
            databases = sqlite_names(base, files) if scratch is not None else set()
            left_out = set(filenames) - set(files)
            for name in [*kept, *files]:
                if is_companion(name, databases) or is_companion(name, left_out):  # WAL of a copied/excluded db
                    continue
                arcname = (rel_dir / name).as_posix()
                if name in databases:
                    assert scratch is not None
                    _add_database(tar, dir_fd, base / name, arcname, scratch, counts)
                else:
                    _add(tar, dir_fd, name, arcname, counts)
    return counts


def _skip(counts: dict[str, int], arcname: str, reason: str) -> None:
    counts["skipped"] += 1
    counts[f"skipped_{reason}"] = counts.get(f"skipped_{reason}", 0) + 1
    log.warning("snapshot_entry_skipped", name=arcname, reason=reason)


def _add_database(tar: tarfile.TarFile, dir_fd: int, path: Path, arcname: str, scratch: Path,
                  counts: dict[str, int]) -> None:
    """Pack a consistent copy of a SQLite database, made with the backup API, under its own name."""
    try:
        st = os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):  # swapped for a link or a FIFO: never opened
        _skip(counts, arcname, kind(st.st_mode))
        return
    copy = scratch / f".sqlite-{secrets.token_hex(8)}"
    try:
        backup_copy(path, copy)
        info = tarfile.TarInfo(arcname)
        info.mode, info.mtime = stat.S_IMODE(st.st_mode), int(st.st_mtime)
        copy_fd = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY)
        try:
            _add_file(tar, copy_fd, copy.name, info, counts)
        finally:
            os.close(copy_fd)
        counts["sqlite"] += 1
    finally:
        copy.unlink(missing_ok=True)


def _add(tar: tarfile.TarFile, dir_fd: int, name: str, arcname: str, counts: dict[str, int]) -> None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    info = tarfile.TarInfo(arcname)
    info.mode, info.mtime = stat.S_IMODE(st.st_mode), int(st.st_mtime)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        counts["dirs"] += 1
    elif stat.S_ISREG(st.st_mode):
        _add_file(tar, dir_fd, name, info, counts)
    else:
        _skip(counts, arcname, kind(st.st_mode))


def _add_file(tar: tarfile.TarFile, dir_fd: int, name: str, info: tarfile.TarInfo, counts: dict[str, int]) -> None:
    try:
        fd = open_leaf(dir_fd, name)
    except FileNotFoundError:
        return
    except NotRegularFile as exc:  # swapped between the listing and the open
        _skip(counts, info.name, exc.reason)
        return
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        info.size = st.st_size
        info.mode, info.mtime = stat.S_IMODE(st.st_mode), int(st.st_mtime)
        reader = _Exactly(fh, info.size)
        tar.addfile(info, reader)  # type: ignore[arg-type, unused-ignore]
    if reader.changed:
        log.warning("snapshot_file_changed", name=info.name)
    counts["files"] += 1
    counts["bytes"] += info.size


def _check_name(name: str) -> PurePosixPath:
    p = PurePosixPath(name)
    if not name or "\x00" in name or p.is_absolute() or any(part in ("..", "") for part in p.parts) \
            or "\\" in name or p.parts[:1] == (".",):
        raise SnapshotError(f"snapshot holds an unsafe member name {name!r}")
    return p


def unpack_into(src: Any, dest: Path) -> dict[str, int]:
    """Extract a tar stream from ``src`` (anything with ``read``) into the empty folder ``dest``."""
    counts = {"files": 0, "dirs": 0, "bytes": 0}
    dir_modes: list[tuple[Path, int, int]] = []
    written: list[Path] = []
    with tarfile.open(fileobj=src, mode="r|") as tar:
        for member in tar:
            rel = _check_name(member.name)
            target = dest.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            if member.isdir():
                target.mkdir(exist_ok=True)
                dir_modes.append((target, member.mode & 0o777, int(member.mtime)))
                counts["dirs"] += 1
            elif member.isreg():
                counts["bytes"] += _write_member(tar.extractfile(member), target, member)
                counts["files"] += 1
                written.append(target)
            else:
                raise SnapshotError(f"snapshot member {member.name!r} is not a regular file or folder")
    for path in written:  # one pass after writing: much cheaper than an fsync per file as it is written
        fsync_file(path)
    for path, mode, mtime in reversed(dir_modes):
        fsync_dir(path)
        os.chmod(path, mode | 0o700)
        os.utime(path, (mtime, mtime))
    fsync_dir(dest)
    return counts


def _write_member(data: IO[bytes] | None, target: Path, member: tarfile.TarInfo) -> int:
    if data is None:
        raise SnapshotError(f"snapshot member {member.name!r} has no data")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    written = 0
    with os.fdopen(fd, "wb") as out:
        while block := data.read(COPY_BLOCK):
            out.write(block)
            written += len(block)
    os.chmod(target, member.mode & 0o777)
    os.utime(target, (member.mtime, member.mtime))
    return written
