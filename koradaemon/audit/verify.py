"""Verification of a KBL-1 log: every line canonical, every hash and link right, no gaps.

``verify_log`` streams the segments line by line and stops at the first bad
record, naming its seq (the seq that record should have had) and why.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import DataError
from .anchor import Anchor
from .canonical import KEY_RE, parse_canonical
from .fastline import fast_fields, line_head
from .record import GENESIS, RECORD_KEYS, SEGMENT_START, ZERO_HASH, hashed_bytes
from .segments import FIRST_SEGMENT, list_segments, segment_path

HEX64 = re.compile(r"[0-9a-f]{64}")
_key_ok = KEY_RE.fullmatch
_hex_ok = HEX64.fullmatch


@dataclass(frozen=True)
class VerifyResult:
    agency_id: str
    ok: bool
    count: int
    head_seq: int | None = None
    head_hash: str | None = None
    head_segment: int | None = None
    head_offset: int | None = None
    first_bad_seq: int | None = None
    reason: str | None = None
    torn_offset: int | None = None  # where an unterminated last line starts, in the head segment
    torn_bytes: int = 0
    bad_segment: int | None = None  # where the first bad line (or the gap) is
    bad_offset: int | None = None

    @property
    def head(self) -> Anchor | None:
        if self.head_seq is None or self.head_hash is None or self.head_segment is None or self.head_offset is None:
            return None
        return Anchor(self.head_seq, self.head_hash, self.head_segment, self.head_offset)


class BadRecord(Exception):
    def __init__(self, seq: int, reason: str, *, anchor: bool = False) -> None:
        super().__init__(reason)
        self.seq = seq
        self.reason = reason
        self.anchor = anchor  # the chain may be whole; it disagrees with the anchor


class Chain:
    """The expected next record: seq, prev hash, agency; checks one line at a time."""

    __slots__ = ("agency_id", "count", "head", "next_seq", "prev")

    def __init__(self, agency_id: str, next_seq: int = 0, prev: str = ZERO_HASH) -> None:
        self.agency_id = agency_id
        self.head = line_head(agency_id)
        self.next_seq = next_seq
        self.prev = prev
        self.count = 0

    def check(self, line: bytes, segment: int, first_in_segment: bool) -> None:
        """Check one line (without its newline) as the next record; raise :class:`BadRecord`."""
        seq = self.next_seq
        fast = fast_fields(line, self.head)
        if fast is None:
            rec = self._general(line, seq)
            fast = rec["seq"], rec["type"], rec["data"], rec["prev"], rec["hash"], hashed_bytes(line, rec["hash"])
        rec_seq, rtype, data, prev, digest, hashed = fast
        if rec_seq != seq:
            raise BadRecord(seq, f"seq {rec_seq!r} where {seq} was expected")
        if prev != self.prev:
            raise BadRecord(seq, "prev does not match the previous record's hash (broken link)")
        _check_placement(rtype, data, seq, segment, first_in_segment)
        if hashlib.sha256(hashed).hexdigest() != digest:
            raise BadRecord(seq, "hash does not match the record's content")
        self.prev = digest
        self.next_seq = seq + 1
        self.count += 1

    def _general(self, line: bytes, seq: int) -> dict[str, Any]:
        try:
            rec = parse_canonical(line)
        except DataError as exc:
            raise BadRecord(seq, exc.message) from None
        if type(rec) is not dict or rec.keys() != RECORD_KEYS:
            raise BadRecord(seq, "not a record object with exactly the fields v, seq, ts, agency_id, type, data, "
                            "prev, hash")
        self._check_fields(rec, seq)
        return rec

    def _check_fields(self, rec: dict[str, Any], seq: int) -> None:
        if type(rec["v"]) is not int or rec["v"] != 1:
            raise BadRecord(seq, f"unsupported version v={rec['v']!r}")
        if type(rec["seq"]) is not int:
            raise BadRecord(seq, f"seq {rec['seq']!r} is not an integer")
        if rec["agency_id"] != self.agency_id:
            raise BadRecord(seq, f"agency_id {rec['agency_id']!r} where {self.agency_id!r} was expected")
        if type(rec["type"]) is not str or not _key_ok(rec["type"]):
            raise BadRecord(seq, f"bad type {rec['type']!r}")
        if type(rec["data"]) is not dict or type(rec["ts"]) is not str:
            raise BadRecord(seq, "data must be an object and ts a string")
        if type(rec["hash"]) is not str or not _hex_ok(rec["hash"]):
            raise BadRecord(seq, "hash is not 64 lowercase hex digits")


def _check_placement(rtype: str, data: dict[str, Any], seq: int, segment: int, first: bool) -> None:
    if first and segment == FIRST_SEGMENT:
        if rtype != GENESIS:
            raise BadRecord(seq, "the first record of the first segment must be genesis")
    elif first:
        if rtype != SEGMENT_START or data.get("segment") != segment or data.get("prev_segment") != segment - 1:
            raise BadRecord(seq, f"segment {segment} does not start with its segment_start record")
    elif rtype in (GENESIS, SEGMENT_START):
        raise BadRecord(seq, f"{rtype} record in the middle of a segment")


def read_record_ending_at(path: Path, offset: int, seq: int = -1) -> tuple[bytes, int]:
    """The line (without ``\\n``) that ends at byte ``offset`` of ``path``, and where it starts."""
    with open(path, "rb") as f:
        start = max(0, offset - 70 * 1024)
        f.seek(start)
        buf = f.read(offset - start)
    if len(buf) != offset - start or not buf.endswith(b"\n"):
        raise BadRecord(seq, "the anchored record does not end at the anchored offset")
    nl = buf.rfind(b"\n", 0, len(buf) - 1)
    if nl < 0 and start > 0:
        raise BadRecord(seq, "the anchored record is longer than a line may be")
    return buf[nl + 1 : -1], start + nl + 1


class _Scan:
    """One verification run over the segments of a log."""

    def __init__(self, agency_dir: Path, agency_id: str, anchor: Anchor | None, limit: Anchor | None) -> None:
        self.dir = agency_dir
        self.chain = Chain(agency_id)
        self.anchor = anchor
        self.anchor_seen = False
        self.limit = limit
        self.head: Anchor | None = None
        self.torn: tuple[int, int] | None = None
        self.at: tuple[int, int] | None = None  # (segment, offset) of the first bad line
        self._end = 0  # offset just past the last good line of the segment being read

    def resume_at(self, start: Anchor) -> None:
        """Trust the log up to ``start`` once its own record hashes to ``start.hash``."""
        line, _ = read_record_ending_at(segment_path(self.dir, start.segment), start.offset, start.seq)
        try:
            rec = parse_canonical(line)
        except DataError as exc:
            raise BadRecord(start.seq, f"anchored record: {exc.message}") from None
        if type(rec) is not dict or rec.get("seq") != start.seq or rec.get("hash") != start.hash:
            raise BadRecord(start.seq, "the anchored record's seq or hash differ from the anchor")
        if rec.get("agency_id") != self.chain.agency_id:
            raise BadRecord(start.seq, "the anchored record belongs to another agency")
        if hashlib.sha256(hashed_bytes(line, start.hash)).hexdigest() != start.hash:
            raise BadRecord(start.seq, "the anchored record's hash does not match its content")
        self.chain.next_seq, self.chain.prev = start.seq + 1, start.hash
        self.head = start
        self.anchor_seen = self.anchor is not None and self.anchor == start

    def run(self, segments: list[int], start: Anchor | None) -> None:
        if not segments:
            raise BadRecord(self.chain.next_seq, "no log segments")
        if start is not None:
            if segments[: start.segment] != list(range(FIRST_SEGMENT, start.segment + 1)):
                raise BadRecord(start.seq, f"segments up to the anchored segment {start.segment} are not all present")
            segments = [n for n in segments if n >= start.segment]
        expected = start.segment if start is not None else FIRST_SEGMENT
        for number in segments:
            if number != expected:
                self.at = (number, 0)
                raise BadRecord(self.chain.next_seq, f"segment {expected} is missing")
            expected += 1
            offset = start.offset if start is not None and number == start.segment else 0
            with open(segment_path(self.dir, number), "rb") as f:
                f.seek(offset)
                if self._segment(f, number, offset, last=number == segments[-1]):
                    return

    def _segment(self, f: BinaryIO, number: int, offset: int, last: bool) -> bool:
        """Scan one segment from ``offset``; True when the limit was reached."""
        start = offset
        try:
            return self._lines(f, number, last)
        finally:
            if self._end > start:  # the last good record of this segment becomes the head
                self.head = Anchor(self.chain.next_seq - 1, self.chain.prev, number, self._end)

    def _lines(self, f: BinaryIO, number: int, last: bool) -> bool:
        chain, check = self.chain, self.chain.check
        offset = self._end = f.tell()
        first = offset == 0
        limit = self.limit.offset if self.limit is not None and self.limit.segment == number else None
        anchor = self.anchor.offset if self.anchor is not None and self.anchor.segment == number else None
        for line in f:
            if limit is not None and offset >= limit:
                return True
            if not line.endswith(b"\n"):
                self.at = (number, offset)
                if last:
                    self.torn = (offset, len(line))
                    return True
                raise BadRecord(chain.next_seq, f"unterminated line in segment {number} at byte {offset}")
            try:
                check(line[:-1], number, first)
            except BadRecord:
                self.at = (number, offset)
                raise
            first = False
            offset = self._end = offset + len(line)
            if offset == anchor:
                self._anchor_at(number, offset)
        if first and offset == 0:
            self.at = (number, 0)
            raise BadRecord(chain.next_seq, f"segment {number} is empty")
        return limit is not None

    def _anchor_at(self, number: int, offset: int) -> None:
        assert self.anchor is not None
        if self.anchor != Anchor(self.chain.next_seq - 1, self.chain.prev, number, offset):
            raise BadRecord(self.anchor.seq, "the anchored seq/hash is not on the chain at its offset", anchor=True)
        self.anchor_seen = True

    def finish(self) -> None:
        if self.anchor is None or self.anchor_seen:
            return
        head_seq = self.head.seq if self.head is not None else -1
        if head_seq < self.anchor.seq:
            raise BadRecord(head_seq + 1, f"log ends at seq {head_seq} before the anchored head seq "
                            f"{self.anchor.seq} (truncated or rolled back)", anchor=True)
        raise BadRecord(self.anchor.seq, "the anchored record is not on the chain", anchor=True)


def verify_log(
    agency_dir: Path,
    agency_id: str,
    *,
    anchor: Anchor | None = None,
    start: Anchor | None = None,
    limit: Anchor | None = None,
) -> VerifyResult:
    """Verify a log from genesis (or only past ``start``), optionally checking ``anchor`` is on it.

    ``limit`` stops at a position (a live log's durable head). An unterminated
    last line is reported in ``torn_offset``/``torn_bytes``, not as a failure.
    """
    scan = _Scan(agency_dir, agency_id, anchor, limit)
    try:
        segments = list_segments(agency_dir)
        if start is not None:
            scan.resume_at(start)
        scan.run(segments, start)
        scan.finish()
    except BadRecord as bad:
        seq = bad.seq if bad.seq >= 0 else scan.chain.next_seq
        at = None if bad.anchor else scan.at
        return _result(scan, agency_id, ok=False, first_bad_seq=seq, reason=bad.reason, at=at)
    except OSError as exc:
        return _result(scan, agency_id, ok=False, first_bad_seq=scan.chain.next_seq, reason=f"cannot read: {exc}")
    return _result(scan, agency_id, ok=True)


def _result(scan: _Scan, agency_id: str, *, ok: bool, first_bad_seq: int | None = None,
            reason: str | None = None, at: tuple[int, int] | None = None) -> VerifyResult:
    head = scan.head
    return VerifyResult(
        agency_id=agency_id, ok=ok, count=scan.chain.count,
        head_seq=head.seq if head else None, head_hash=head.hash if head else None,
        head_segment=head.segment if head else None, head_offset=head.offset if head else None,
        first_bad_seq=first_bad_seq, reason=reason,
        torn_offset=scan.torn[0] if scan.torn else None, torn_bytes=scan.torn[1] if scan.torn else 0,
        bad_segment=at[0] if at else None, bad_offset=at[1] if at else None,
    )
