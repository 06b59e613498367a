"""Control protocol: one JSON object per line, both ways.

Request::

    {"id": 7, "op": "status", "agency_id": "demo", "token": "...", "args": {}}

Responses carry the request's ``id``::

    {"id": 7, "ok": true, "result": {...}}
    {"id": 7, "ok": false, "error": {"code": "auth", "message": "...", "hint": "..."}}

A streaming operation (``subscribe``) answers with ``{"id": .., "ok": true, "event": {...}}``
lines and finishes with ``{"id": .., "ok": true, "end": true}`` (or an error line).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ControlError, KoraError, ProtocolError

MAX_REQUEST_BYTES = 1 << 20
OP_RE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
MAX_FIELD_CHARS = 256
MAX_SAFE_INT = 2**53 - 1  # what every JSON reader holds exactly


class InternalError(ControlError):
    """A handler failed unexpectedly; details are in the daemon's log."""

    exit_code = 70
    code = "internal"


class BadRequest(ProtocolError):
    """A malformed request, with whatever could be read of it (for the reply and the audit)."""

    def __init__(self, message: str, *, request_id: Any = None, agency_id: str | None = None, op: str = "") -> None:
        super().__init__(message)
        self.request_id = request_id
        self.agency_id = agency_id
        self.op = op


class RequestTooLarge(BadRequest):
    """A request line longer than the limit; the reader skips to the next newline after the reply."""


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int


@dataclass(frozen=True)
class Request:
    id: Any
    op: str
    agency_id: str
    args: Mapping[str, Any] = field(default_factory=dict)
    peer: Peer | None = None


@dataclass(frozen=True)
class Envelope:
    """A parsed request line, token included (only the server's authentication sees it)."""

    request: Request
    token: str


def parse_request(line: bytes) -> Envelope:
    """Decode and validate one request line (without its ``\\n``); raises :class:`BadRequest`."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request is not valid UTF-8") from None
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant,
                         parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"request is not valid JSON: {_short(exc)}") from None
    if not isinstance(obj, dict):
        raise BadRequest("request must be a JSON object")
    request_id = obj.get("id")
    if not _is_scalar(request_id):
        raise BadRequest("'id' must be a JSON scalar")
    agency = obj.get("agency_id")
    agency_id = agency if isinstance(agency, str) and len(agency) <= MAX_FIELD_CHARS else None
    op = obj.get("op")
    op_text = op if isinstance(op, str) and len(op) <= MAX_FIELD_CHARS else ""

    def bad(message: str) -> BadRequest:
        return BadRequest(message, request_id=request_id, agency_id=agency_id, op=op_text)

    unknown = sorted(set(obj) - {"id", "op", "agency_id", "token", "args"})
    if unknown:
        raise bad(f"unknown request field(s): {', '.join(unknown)[:200]}")
    if not isinstance(op, str) or not OP_RE.fullmatch(op):
        raise bad("'op' must be an operation name")
    if agency_id is None or not agency_id:
        raise bad("'agency_id' must be a non-empty string")
    token = obj.get("token")
    if not isinstance(token, str) or not token or len(token) > MAX_FIELD_CHARS:
        raise bad("'token' must be a non-empty string")
    args = obj.get("args", {})
    if not isinstance(args, dict):
        raise bad("'args' must be a JSON object")
    return Envelope(Request(request_id, op, agency_id, args), token)


def encode_line(obj: Mapping[str, Any]) -> bytes:
    """Compact JSON plus ``\\n``; raises ``TypeError``/``ValueError`` for what JSON cannot carry."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode() + b"\n"


def encode_request(request_id: Any, op: str, agency_id: str, token: str, args: Mapping[str, Any]) -> bytes:
    return encode_line({"id": request_id, "op": op, "agency_id": agency_id, "token": token, "args": dict(args)})


def ok_line(request_id: Any, result: Mapping[str, Any]) -> bytes:
    return encode_line({"id": request_id, "ok": True, "result": result})


def event_line(request_id: Any, event: Mapping[str, Any]) -> bytes:
    return encode_line({"id": request_id, "ok": True, "event": event})


def end_line(request_id: Any) -> bytes:
    return encode_line({"id": request_id, "ok": True, "end": True})


def error_line(request_id: Any, exc: KoraError) -> bytes:
    """An error reply; an id JSON cannot carry becomes null rather than failing the reply."""
    body = error_body(exc)
    try:
        return encode_line({"id": request_id, "ok": False, "error": body})
    except (TypeError, ValueError):
        return encode_line({"id": None, "ok": False, "error": body})


def error_body(exc: KoraError) -> dict[str, str]:
    raw = exc.to_dict()
    body = {"code": raw["error"], "message": raw["message"]}
    if "hint" in raw:
        body["hint"] = raw["hint"]
    return body


def error_from_body(body: Any) -> KoraError:
    """Rebuild the :class:`KoraError` subclass named by an error body's ``code``."""
    if not isinstance(body, dict):
        return ControlError(f"malformed error reply: {body!r}"[:300])
    code = str(body.get("code", "error"))
    message = str(body.get("message", "error"))
    hint = body.get("hint")
    cls = error_classes().get(code, ControlError)
    try:
        return cls(message, hint=hint if isinstance(hint, str) else None)
    except TypeError:
        return ControlError(f"{code}: {message}")


def error_classes() -> dict[str, type[KoraError]]:
    """Every known error class by its ``code`` (the most general class wins a shared code)."""
    out: dict[str, type[KoraError]] = {}
    pending: list[type[KoraError]] = [KoraError]
    while pending:
        cls = pending.pop(0)
        out.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return out


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key[:64]!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:32]}")
    return value


def _is_scalar(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= MAX_FIELD_CHARS
    if isinstance(value, int) and not isinstance(value, bool):
        return -MAX_SAFE_INT <= value <= MAX_SAFE_INT
    return value is None or isinstance(value, bool | float)


def _short(exc: BaseException) -> str:
    return str(exc)[:200] or type(exc).__name__
