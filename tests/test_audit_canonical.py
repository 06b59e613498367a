"""Canonical JSON of KBL-1: round trips, and every non-canonical variant is refused."""

from __future__ import annotations

import json
import operator
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koradaemon.audit.canonical import MAX_INT, MAX_LINE_BYTES, CanonicalError, canonical_bytes, parse_canonical

# the key rule [a-z][a-z0-9_]{0,63}, drawn without the regex engine (the same set, cheaper to generate)
keys = st.builds(operator.add, st.sampled_from(string.ascii_lowercase),
                 st.text(string.ascii_lowercase + string.digits + "_", max_size=63))
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
scalars = st.none() | st.booleans() | st.integers(-MAX_INT, MAX_INT) | text
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                      max_leaves=20)
objects = st.dictionaries(keys, values, max_size=6)


def reference(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


@settings(max_examples=150, deadline=None)
@given(objects)
def test_round_trip_matches_the_reference_encoder(obj: dict[str, Any]) -> None:
    raw = canonical_bytes(obj)
    assert raw == reference(obj)
    assert parse_canonical(raw) == obj


@settings(max_examples=100, deadline=None)
@given(objects.filter(bool))
def test_spacing_and_key_order_variants_are_refused(obj: dict[str, Any]) -> None:
    spaced = json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()
    if spaced != canonical_bytes(obj):
        with pytest.raises(CanonicalError):
            parse_canonical(spaced)
    if len(obj) > 1:
        reversed_keys = json.dumps(dict(sorted(obj.items(), reverse=True)), separators=(",", ":"),
                                   ensure_ascii=False).encode()
        with pytest.raises(CanonicalError):
            parse_canonical(reversed_keys)
    escaped = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    if escaped != canonical_bytes(obj):
        with pytest.raises(CanonicalError):
            parse_canonical(escaped)


@settings(max_examples=100, deadline=None)
@given(objects, keys, values)
def test_duplicate_keys_are_refused(obj: dict[str, Any], key: str, value: Any) -> None:
    body = canonical_bytes({**obj, key: value})
    dup = b'{"' + key.encode() + b'":' + reference(value) + b"," + body[1:]
    with pytest.raises(CanonicalError):
        parse_canonical(dup)


@pytest.mark.parametrize(
    "line",
    [
        b'{"a":1.0}', b'{"a":1e3}', b'{"a":NaN}', b'{"a":Infinity}', b'{"a":-Infinity}',
        b'{"a":9007199254740992}', b'{"a":-9007199254740992}', b'{"A":1}', b'{"1a":1}', b'{"a-b":1}',
        b'{"a":"\\ud800"}', b'{"a":"\xff"}', b'{"a":1} ', b' {"a":1}', b'{"a" :1}', b'{"a":1,"a":1}',
        b'{"b":1,"a":2}', b'{"a":"\\u00e9"}', b'{"a":"\\/"}', b'{"a":01}', b"", b"[1,2",
        b'\xef\xbb\xbf{"a":1}',
    ],
)
def test_non_canonical_lines_are_refused(line: bytes) -> None:
    with pytest.raises(CanonicalError):
        parse_canonical(line)


@pytest.mark.parametrize(
    "obj",
    [
        {"a": 1.5}, {"a": float("nan")}, {"a": MAX_INT + 1}, {"A": 1}, {"": 1}, {1: 2}, {"a": b"x"},
        {"a": "\ud800"}, {"a": (1, 2)}, {"k" * 65: 1}, {"a": {1, 2}},
    ],
)
def test_non_canonical_values_are_refused(obj: dict[Any, Any]) -> None:
    with pytest.raises(CanonicalError):
        canonical_bytes(obj)


def test_depth_and_size_limits() -> None:
    deep: Any = 1
    for _ in range(15):
        deep = [deep]
    assert parse_canonical(canonical_bytes({"a": deep})) == {"a": deep}  # 16 levels: the limit
    with pytest.raises(CanonicalError):
        canonical_bytes({"a": [deep]})
    big = {"a": "x" * (MAX_LINE_BYTES - 8)}
    assert len(canonical_bytes(big)) == MAX_LINE_BYTES
    with pytest.raises(CanonicalError):
        canonical_bytes({"a": "x" * (MAX_LINE_BYTES - 7)})


def test_unicode_is_raw_and_control_characters_are_escaped() -> None:
    raw = canonical_bytes({"a": "é\u2028\n\x01\"\\"})
    assert raw == '{"a":"é\u2028\\n\\u0001\\"\\\\"}'.encode()
    assert parse_canonical(raw) == {"a": "é\u2028\n\x01\"\\"}


def test_bools_and_null_are_allowed_and_distinct_from_ints() -> None:
    assert canonical_bytes({"a": True, "b": None, "c": 1}) == b'{"a":true,"b":null,"c":1}'


@settings(max_examples=100, deadline=None)
@given(objects, keys, st.text(min_size=1, max_size=12), st.integers(0, MAX_INT),
       st.text("0123456789abcdef", min_size=64, max_size=64))
def test_fast_line_encoder_equals_the_plain_rule(data: dict[str, Any], rtype: str, agency: str, seq: int,
                                                 prev: str) -> None:
    from koradaemon.audit.fastline import fast_fields, line_head
    from koradaemon.audit.record import LineEncoder, data_bytes, record_hash

    ts = "2026-01-01T00:00:00.000000Z"
    line, digest = LineEncoder(agency).encode(seq, ts, rtype, data_bytes(data, agency, rtype), prev)
    record = {"v": 1, "seq": seq, "ts": ts, "agency_id": agency, "type": rtype, "data": data, "prev": prev}
    assert digest == record_hash(record)
    assert line == canonical_bytes({**record, "hash": digest}) + b"\n"
    assert parse_canonical(line[:-1]) == {**record, "hash": digest}
    fields = fast_fields(line[:-1], line_head(agency))
    assert fields is not None and fields[:5] == (seq, rtype, data, prev, digest)
