"""Opening a log: find its head, check it against the anchor, recover a torn tail.

* no segments, no anchor → a new log (segment 1, ``genesis``);
* an anchor → verify in full from genesis, checking the anchored record is on
  the chain (``full=False``: only from the anchored record on, a cheap start
  for very large logs); no anchor but segments → verify in full, then anchor;
* an unterminated last line beyond the anchor → moved aside to
  ``audit-NNNNNN.jsonl.torn-<ts>``, segment truncated and fsynced; the caller
  appends a ``recovery`` record;
* anything else → :class:`TamperError` naming the first bad seq.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from ..errors import TamperError
from ..fsutil import fsync_dir
from .anchor import Anchor, AnchorStore
from .record import GENESIS, ZERO_HASH, LineEncoder, data_bytes, now_ts
from .segments import FIRST_SEGMENT, create_segment, list_segments, remove_stale_tmp, segment_path
from .verify import VerifyResult, verify_log

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Opened:
    head: Anchor
    recovered: dict[str, Any] | None  # data for the recovery record, if a torn tail was moved aside
    checked: int  # records verified while opening
    created: bool


def open_log(agency_dir: Path, agency_id: str, anchors: AnchorStore, *, full: bool = True) -> Opened:
    if not agency_dir.is_dir():
        agency_dir.mkdir(parents=True)
        fsync_dir(agency_dir.parent)
    remove_stale_tmp(agency_dir)
    anchor = anchors.load(agency_id)
    if not list_segments(agency_dir):
        if anchor is not None:
            raise TamperError(f"audit log of {agency_id!r} is missing but anchored at seq {anchor.seq}", seq=0)
        genesis = create_genesis(agency_dir, agency_id)
        anchors.store(agency_id, genesis)
        return Opened(genesis, None, 1, True)
    if anchor is None:
        log.warning("audit_anchor_missing", agency_id=agency_id, action="full verification, then anchor")
        result = verify_log(agency_dir, agency_id)
    else:
        result = verify_log(agency_dir, agency_id, anchor=anchor, start=None if full else anchor)
    if not result.ok:
        raise TamperError(f"audit log of {agency_id!r} fails verification at seq {result.first_bad_seq}: "
                          f"{result.reason}", seq=result.first_bad_seq)
    head = result.head
    if head is None:  # only a torn first segment: impossible with tmp+rename creation
        raise TamperError(f"audit log of {agency_id!r} has no complete record", seq=0)
    recovered = move_torn_tail(agency_dir, result) if result.torn_bytes else None
    if head != anchor:
        anchors.store(agency_id, head)
        if anchor is not None:
            log.info("audit_anchor_advanced", agency_id=agency_id, anchor_seq=anchor.seq, head_seq=head.seq)
    return Opened(head, recovered, result.count, False)


def create_genesis(agency_dir: Path, agency_id: str) -> Anchor:
    data = data_bytes({"format": "KBL-1"}, agency_id, GENESIS)
    line, digest = LineEncoder(agency_id).encode(0, now_ts(), GENESIS, data, ZERO_HASH)
    os.close(create_segment(agency_dir, FIRST_SEGMENT, line))
    log.info("audit_log_created", agency_id=agency_id)
    return Anchor(0, digest, FIRST_SEGMENT, len(line))


def move_torn_tail(agency_dir: Path, result: VerifyResult) -> dict[str, Any]:
    """Move the unterminated tail of the last segment aside and truncate the segment durably."""
    number = list_segments(agency_dir)[-1]  # a torn line is only ever accepted in the last segment
    path = segment_path(agency_dir, number)
    offset = result.torn_offset or 0
    with open(path, "rb") as f:
        f.seek(offset)
        torn = f.read()
    aside = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{offset}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, torn)
        os.fsync(fd)
    finally:
        os.close(fd)
    if offset == 0:
        path.unlink()
    else:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, offset)
            os.fsync(fd)
        finally:
            os.close(fd)
    fsync_dir(agency_dir)
    log.warning("audit_torn_tail_recovered", segment=number, offset=offset, bytes=len(torn), moved_to=aside.name)
    return {"segment": number, "offset": offset, "bytes": len(torn), "moved_to": aside.name}
