"""Canonical JSON for KBL-1 lines: one encoder, one strict parser.

A value is canonical when it is made only of objects whose keys match
``^[a-z][a-z0-9_]{0,63}$``, arrays, strings (valid Unicode, no lone
surrogates), integers within ±(2**53 - 1), ``true``/``false`` and ``null``,
nested at most 16 deep, and its encoded line is at most 64 KiB. Floats, NaN
and Infinity are refused. The bytes are exactly what
``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
allow_nan=False)`` produces, encoded as UTF-8.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from ..errors import DataError

KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_INT = 2**53 - 1
MAX_DEPTH = 16
MAX_LINE_BYTES = 64 * 1024

ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _make_fast_encode() -> Callable[[object], str]:
    """``ENCODER.encode`` without building a new C encoder per call; falls back when unavailable.

    Only for validated values (no cycles: :func:`validate` bounds the depth).
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return ENCODER.encode
    try:
        enc = make(None, ENCODER.default, json.encoder.encode_basestring, None, ":", ",", True, False, False)
        probe = {"b": [1, "é\u2028\n", None, True], "a": {"z": -5}}
        if "".join(enc(probe, 0)) != ENCODER.encode(probe):
            return ENCODER.encode
    except Exception:
        return ENCODER.encode
    join = "".join
    return lambda obj: join(enc(obj, 0))


fast_encode = _make_fast_encode()
_key_re_ok = KEY_RE.fullmatch
_good_keys: set[str] = set()  # keys already checked (bounded), so hot paths skip the regex


def _key_ok(key: object) -> bool:
    if key in _good_keys:
        return True
    if type(key) is not str or not _key_re_ok(key):
        return False
    if len(_good_keys) < 4096:
        _good_keys.add(key)
    return True


class CanonicalError(DataError):
    """A value or a line is not canonical KBL-1 JSON."""

    code = "canonical"


def _no_float(text: str) -> Any:
    raise CanonicalError(f"floats are not allowed: {text}")


def _no_constant(text: str) -> Any:
    raise CanonicalError(f"{text} is not allowed")


_DECODER = json.JSONDecoder(parse_float=_no_float, parse_constant=_no_constant)


def validate(obj: object, depth: int = 1) -> None:
    """Raise :class:`CanonicalError` unless ``obj`` is a canonical value (see module doc).

    ``depth`` counts containers: an object or array at depth 17 is refused.
    """
    t = type(obj)
    if t is str or t is bool or obj is None:
        return
    if depth > MAX_DEPTH and (t is dict or t is list):
        raise CanonicalError(f"nested deeper than {MAX_DEPTH}")
    if t is dict and depth < MAX_DEPTH:  # fast path for flat objects of str/int
        for key, value in obj.items():  # type: ignore[attr-defined]
            if key not in _good_keys and not _key_ok(key):
                raise CanonicalError(f"bad key {key!r}: keys must match {KEY_RE.pattern}")
            tv = type(value)
            if tv is str:
                continue
            if tv is int and -MAX_INT <= value <= MAX_INT:
                continue
            validate(value, depth + 1)
        return
    if t is int:
        if not -MAX_INT <= obj <= MAX_INT:  # type: ignore[operator]
            raise CanonicalError(f"integer out of range: {obj}")
        return
    if t is dict:
        for key, value in obj.items():  # type: ignore[attr-defined]
            if not _key_ok(key):
                raise CanonicalError(f"bad key {key!r}: keys must match {KEY_RE.pattern}")
            if type(value) is not str:
                validate(value, depth + 1)
        return
    if t is list:
        for value in obj:  # type: ignore[attr-defined]
            if type(value) is not str:
                validate(value, depth + 1)
        return
    raise CanonicalError(f"type {t.__name__} is not allowed in a canonical value")


def canonical_text(obj: object) -> str:
    """Validate ``obj`` and return its canonical JSON text (not length-checked)."""
    validate(obj)
    return fast_encode(obj)


def canonical_bytes(obj: object) -> bytes:
    """The canonical UTF-8 bytes of ``obj`` (without a trailing newline)."""
    text = canonical_text(obj)
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalError(f"string is not valid Unicode (lone surrogate?): {exc.reason}") from exc
    if len(raw) > MAX_LINE_BYTES:
        raise CanonicalError(f"encoded value is {len(raw)} bytes, more than {MAX_LINE_BYTES}")
    return raw


def parse_canonical(line: bytes) -> Any:
    """Parse one line (without its ``\\n``) and insist that it is canonical, byte for byte.

    Duplicate keys, other spacing, other key order, other escapes, floats and
    NaN all make the re-encoded bytes differ or a hook raise.
    """
    if len(line) > MAX_LINE_BYTES:
        raise CanonicalError(f"line is {len(line)} bytes, more than {MAX_LINE_BYTES}")
    try:
        obj = _DECODER.decode(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CanonicalError(f"not valid UTF-8 JSON: {exc}") from exc
    validate(obj)
    try:
        again = ENCODER.encode(obj).encode("utf-8")
    except (UnicodeEncodeError, ValueError) as exc:
        raise CanonicalError(f"cannot re-encode: {exc}") from exc
    if again != line:
        raise CanonicalError("not canonical (spacing, key order, escapes or duplicate keys differ)")
    return obj
