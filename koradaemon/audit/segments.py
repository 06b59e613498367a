"""Segment files of one agency's log: names, listing, durable creation."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..fsutil import fsync_dir

SEGMENT_RE = re.compile(r"audit-(\d{6})\.jsonl")
FIRST_SEGMENT = 1
MAX_SEGMENT = 999_999


def segment_name(number: int) -> str:
    return f"audit-{number:06d}.jsonl"


def segment_path(agency_dir: Path, number: int) -> Path:
    return agency_dir / segment_name(number)


def list_segments(agency_dir: Path) -> list[int]:
    """Segment numbers present in ``agency_dir``, ascending (other files are ignored)."""
    if not agency_dir.is_dir():
        return []
    found = []
    for entry in os.scandir(agency_dir):
        m = SEGMENT_RE.fullmatch(entry.name)
        if m and entry.is_file(follow_symlinks=False):
            found.append(int(m.group(1)))
    return sorted(found)


def create_segment(agency_dir: Path, number: int, first_line: bytes) -> int:
    """Create segment ``number`` holding ``first_line``, durably, and return an append fd on it.

    The line is written to a temporary file, fsynced and renamed into place, so
    a segment file never exists without its complete first record.
    """
    final = segment_path(agency_dir, number)
    tmp = final.with_name(final.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, first_line)
        os.fsync(fd)
    except BaseException:
        tmp.unlink(missing_ok=True)  # disk full: leave nothing half-made behind
        raise
    finally:
        os.close(fd)
    if final.exists():
        tmp.unlink()
        raise FileExistsError(f"segment {final.name} already exists")
    os.rename(tmp, final)
    fsync_dir(agency_dir)
    return open_append(final)


def open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def remove_stale_tmp(agency_dir: Path) -> None:
    """Drop half-made segments (``*.jsonl.tmp``) a crash left before their rename."""
    for entry in agency_dir.glob("audit-*.jsonl.tmp"):
        entry.unlink()
