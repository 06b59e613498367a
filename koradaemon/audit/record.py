"""KBL-1 records: the fields, the hash rule and a fast line encoder.

A record is ``{"v":1,"seq":…,"ts":…,"agency_id":…,"type":…,"data":{…},"prev":…,"hash":…}``;
``hash`` is the lowercase hex SHA-256 of the canonical JSON of the record
without its ``hash`` key. In canonical (sorted) key order the line reads
``agency_id, data, hash, prev, seq, ts, type, v``, so the encoder builds the
hashed text as prefix + suffix and the line as prefix + hash + suffix, and
never encodes a record twice.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from .canonical import ENCODER, KEY_RE, MAX_LINE_BYTES, CanonicalError, canonical_bytes

VERSION = 1
ZERO_HASH = "0" * 64
RECORD_KEYS = frozenset({"v", "seq", "ts", "agency_id", "type", "data", "prev", "hash"})
GENESIS = "genesis"
SEGMENT_START = "segment_start"
RECOVERY = "recovery"
LOCKDOWN = "lockdown"
UNLOCK = "unlock"
# Types only the log itself writes; callers of append() cannot use them.
RESERVED_TYPES = frozenset({GENESIS, SEGMENT_START, RECOVERY, UNLOCK})
# Fixed bytes around data/agency_id/type/ts in one line: keys, quotes, seq digits, hashes, newline.
LINE_OVERHEAD = 256


@dataclass(frozen=True, slots=True)
class Record:
    seq: int
    hash: str
    type: str
    ts: str
    segment: int
    offset: int  # byte offset just past this record's line in its segment


def now_ts() -> str:
    """RFC 3339 UTC with microseconds and ``Z``, e.g. ``2026-01-02T03:04:05.123456Z``."""
    now = time.time()
    secs = int(now)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{int((now - secs) * 1e6):06d}Z"


_good_types: set[str] = set()


def check_type(record_type: str) -> str:
    if record_type in _good_types:
        return record_type
    if type(record_type) is not str or not KEY_RE.fullmatch(record_type):
        raise CanonicalError(f"bad record type {record_type!r}: must match {KEY_RE.pattern}")
    if len(_good_types) < 1024:
        _good_types.add(record_type)
    return record_type


class LineEncoder:
    """Encodes records of one agency into lines; ``data`` arrives already as canonical bytes."""

    __slots__ = ("_head", "_types")

    def __init__(self, agency_id: str) -> None:
        self._head = ('{"agency_id":' + ENCODER.encode(agency_id) + ',"data":').encode()
        self._types: dict[str, str] = {}

    def encode(self, seq: int, ts: str, record_type: str, data: bytes, prev: str) -> tuple[bytes, str]:
        """Return (line with its newline, hash); ``data`` comes from :func:`data_bytes`."""
        parts: list[bytes] = []
        digest, _ = self.encode_parts(parts, seq, ts, record_type, data, prev)
        return b"".join(parts), digest

    def encode_parts(self, out: list[bytes], seq: int, ts: str, record_type: str, data: bytes,
                     prev: str) -> tuple[str, int]:
        """Append the pieces of one line to ``out``; return (hash, line length)."""
        tj = self._types.get(record_type)
        if tj is None:
            tj = self._types[record_type] = ENCODER.encode(record_type)
        prefix = self._head + data
        suffix = f',"prev":"{prev}","seq":{seq},"ts":"{ts}","type":{tj},"v":1}}\n'.encode()
        digest = hashlib.sha256(prefix + suffix[:-1]).hexdigest()
        out += (prefix, b',"hash":"', digest.encode(), b'"', suffix)
        return digest, len(prefix) + len(suffix) + 74


def data_bytes(data: dict[str, Any], agency_id: str, record_type: str) -> bytes:
    """Validate ``data`` and return its canonical bytes, refusing lines that would exceed the limit."""
    if type(data) is not dict:
        raise CanonicalError("record data must be an object")
    raw = canonical_bytes(data)
    if len(raw) + len(agency_id.encode()) + len(record_type) + LINE_OVERHEAD > MAX_LINE_BYTES:
        raise CanonicalError(f"record data of {len(raw)} bytes would make the line longer than {MAX_LINE_BYTES}")
    return raw


def record_hash(record: dict[str, Any]) -> str:
    """The hash rule, written plainly: SHA-256 of the canonical record without ``hash``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical_bytes(body)).hexdigest()


def hashed_bytes(line: bytes, digest: str) -> bytes:
    """The bytes the hash covers, cut out of a canonical line whose ``hash`` is ``digest``.

    The top-level ``hash`` member is the last occurrence of ``,"hash":"<digest>"``:
    every later member (prev, seq, ts, type, v) holds no unescaped quote.
    """
    member = b',"hash":"' + digest.encode() + b'"'
    i = line.rfind(member)
    return line[:i] + line[i + len(member):]
