"""JSON for the CLI's fast path through CPython's C accelerator (``_json``), without the json package.

``import json`` loads ``re`` (and with it enum, functools, collections): about as much CPU as the
interpreter's own start. The control protocol's messages are plain JSON values, and ``_json``
parses and quotes those in C. :func:`loads` and :func:`dumps` give exactly what ``json.loads`` and
``json.dumps`` give; anything they do not cover (invalid input, a float the caller forbids, a type
other than dict, list, str, int, float, bool and None, an interpreter without ``_json``) is handed
to the json package, which also raises its usual errors.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: this module is on every CLI call
if TYPE_CHECKING:
    from typing import Any

try:
    import _json
except ImportError:  # another interpreter: the json package does it all
    _json = None  # type: ignore[assignment]

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Context:
    """What ``_json.make_scanner`` reads from a ``json.JSONDecoder()`` with default arguments."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


_scan = None


class _Fallback(Exception):
    pass


def _quote(text: str) -> str:
    return _json.encode_basestring(text)


def loads(data: bytes) -> Any:
    """``json.loads(data)`` for one UTF-8 message."""
    global _scan
    try:
        text = data.decode("utf-8")
        if _scan is None and _json is not None:
            _scan = _json.make_scanner(_Context())  # type: ignore[arg-type]  # duck-typed decoder
        if _scan is None or text[:1] == "\ufeff":
            raise _Fallback
        start = len(text) - len(text.lstrip(_WHITESPACE))
        value, end = _scan(text, start)  # StopIteration, or a SystemError when json.decoder is not loaded
        if text[end:].strip(_WHITESPACE):
            raise _Fallback
        return value
    except Exception:  # whatever went wrong, the json package decides (and raises its error)
        import json

        return json.loads(data)


def dumps(obj: object, *, indent: int | None = None, sort_keys: bool = False, compact: bool = False,
          allow_nan: bool = True) -> str:
    """``json.dumps(obj, ensure_ascii=False, default=str, ...)`` with these options (``compact``:
    ``separators=(",", ":")``)."""
    item_sep, key_sep = ("," if compact or indent is not None else ", "), (":" if compact else ": ")
    try:
        if _json is None:
            raise _Fallback
        out: list[str] = []
        _encode(obj, out, indent, 0, sort_keys, item_sep, key_sep, allow_nan, set())
        return "".join(out)
    except _Fallback:
        import json

        return json.dumps(obj, ensure_ascii=False, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan,
                          separators=(item_sep, key_sep), default=str)


def _encode(obj: object, out: list[str], indent: int | None, level: int, sort_keys: bool, item_sep: str,
            key_sep: str, allow_nan: bool, seen: set[int]) -> None:
    kind = type(obj)
    if kind is str:
        out.append(_quote(obj))  # type: ignore[arg-type]
    elif obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif kind is int:
        out.append(repr(obj))
    elif isinstance(obj, float) and kind is float:
        if obj != obj or obj in (float("inf"), float("-inf")):
            if not allow_nan:
                raise _Fallback  # json raises its ValueError
            out.append("NaN" if obj != obj else "Infinity" if obj > 0 else "-Infinity")
        else:
            out.append(repr(obj))
    elif kind is list or kind is dict:
        if not obj:
            out.append("[]" if kind is list else "{}")
            return
        if id(obj) in seen:
            raise _Fallback  # a cycle: json raises its ValueError
        seen.add(id(obj))
        inner = "" if indent is None else "\n" + " " * (indent * (level + 1))
        sep = item_sep + inner
        if kind is list:
            items: Any = ((None, item) for item in obj)  # type: ignore[attr-defined]
        else:
            items = obj.items()  # type: ignore[attr-defined]
            if any(type(k) is not str for k in obj):  # type: ignore[attr-defined]
                raise _Fallback  # keys json converts (numbers, booleans, None)
            if sort_keys:
                items = sorted(items)
        out.append("[" if kind is list else "{")
        for i, (key, item) in enumerate(items):
            out.append(sep if i else inner)
            if key is not None:
                out.append(_quote(key))
                out.append(key_sep)
            _encode(item, out, indent, level + 1, sort_keys, item_sep, key_sep, allow_nan, seen)
        out.append("" if indent is None else "\n" + " " * (indent * level))
        out.append("]" if kind is list else "}")
        seen.discard(id(obj))
    else:
        raise _Fallback  # another type: json and default=str
