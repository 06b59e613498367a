"""A fast, exact reading of record lines in the shape the daemon writes.

A canonical record line is ``{"agency_id":A,"data":D,"hash":H,"prev":P,"seq":S,"ts":T,"type":Y,"v":1}``.
When a line starts with the expected agency prefix and ends with a tail of
hex hashes, a plain integer, a ``[0-9T:.Z-]`` timestamp and a key-like type,
only ``D`` needs parsing and re-encoding to prove the whole line canonical.
Lines of any other shape return ``None`` and get the general check
(:func:`~koradaemon.audit.canonical.parse_canonical`), which decides.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .canonical import ENCODER, MAX_INT, MAX_LINE_BYTES, CanonicalError, fast_encode, validate

_TAIL = re.compile(
    rb',"hash":"([0-9a-f]{64})","prev":"([0-9a-f]{64})","seq":(0|[1-9][0-9]{0,15}),'
    rb'"ts":"[0-9T:.Z-]{1,40}","type":"([a-z][a-z0-9_]{0,63})","v":1}'
)
_HASH_MEMBER = len(b',"hash":"') + 64 + 1


def _no_float(text: str) -> Any:
    raise CanonicalError("float")


_scan = json.JSONDecoder(parse_float=_no_float, parse_constant=_no_float).scan_once  # type: ignore[attr-defined]

Fields = tuple[int, str, dict[str, Any], str, str, bytes]  # seq, type, data, prev, hash, hashed bytes


def line_head(agency_id: str) -> bytes:
    return ('{"agency_id":' + ENCODER.encode(agency_id) + ',"data":').encode()


def fast_fields(line: bytes, head: bytes) -> Fields | None:
    """The record's fields if ``line`` is provably canonical in the common shape, else ``None``."""
    if len(line) > MAX_LINE_BYTES or not line.startswith(head):
        return None
    pos = line.rfind(b',"hash":"')
    m = _TAIL.fullmatch(line, pos) if pos > 0 else None
    if m is None:
        return None
    try:
        text = line[len(head) : pos].decode("utf-8")
        data, end = _scan(text, 0)
        if end != len(text) or type(data) is not dict:
            return None
        validate(data, 2)
        if fast_encode(data) != text:
            return None
    except Exception:
        return None
    seq = int(m.group(3))
    if seq > MAX_INT:
        return None
    hashed = line[:pos] + line[pos + _HASH_MEMBER :]
    return seq, m.group(4).decode(), data, m.group(2).decode(), m.group(1).decode(), hashed
