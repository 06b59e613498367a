"""Repairing a broken chain for an audited unlock: keep the evidence, keep the chain whole.

Every segment from the one holding the first bad line onward is moved,
untouched, into ``quarantine/<UTC time>/``. If the bad line was not the first
line of its segment, that segment's verified prefix (the bytes before the bad
line) is written back in its place. The log then ends at the last good record,
and the ``unlock`` record appended next is chained to it, so the log verifies
from genesis to now again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import structlog

from ..fsutil import fsync_dir
from .segments import create_segment, list_segments, segment_name, segment_path
from .verify import VerifyResult

log = structlog.get_logger(__name__)

QUARANTINE_DIR = "quarantine"


def quarantine_from(agency_dir: Path, result: VerifyResult) -> list[str]:
    """Move the bad part of the log aside (see module doc); return the quarantined names."""
    if result.ok or result.bad_segment is None or result.bad_offset is None:
        return []
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    qdir = agency_dir / QUARANTINE_DIR / stamp
    suffix = 1
    while qdir.exists():
        suffix += 1
        qdir = agency_dir / QUARANTINE_DIR / f"{stamp}-{suffix}"
    qdir.mkdir(parents=True)
    moved = []
    for number in list_segments(agency_dir):
        if number >= result.bad_segment:
            os.rename(segment_path(agency_dir, number), qdir / segment_name(number))
            moved.append(f"{QUARANTINE_DIR}/{qdir.name}/{segment_name(number)}")
    fsync_dir(qdir)
    fsync_dir(agency_dir)
    if result.bad_offset > 0:
        with open(qdir / segment_name(result.bad_segment), "rb") as f:
            prefix = f.read(result.bad_offset)
        os.close(create_segment(agency_dir, result.bad_segment, prefix))
    log.warning("audit_quarantined", agency_dir=agency_dir.name, files=moved, kept_bytes=result.bad_offset,
                last_good_seq=result.head_seq)
    return moved


def quarantined_records(agency_dir: Path, moved: list[str], result: VerifyResult) -> int:
    """How many record lines left the chain: the bad segment from the bad line on, and every later one."""
    count = 0
    for name in moved:
        data = (agency_dir / name).read_bytes()
        if result.bad_segment is not None and name.endswith(segment_name(result.bad_segment)):
            data = data[result.bad_offset or 0:]
        count += data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return count
