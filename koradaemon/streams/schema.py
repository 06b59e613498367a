"""The event schema (version 1): one JSON object per event, documented in docs/events.md.

Every event the daemon publishes (control-socket ``subscribe`` today, outside streams later)
is built here, so all of them share one envelope::

    {"v": 1, "type": "index", "agency_id": "alpha", "ts": "2026-...Z",
     "seq": 41, "hash": "<64 hex>", "data": {...}}

``seq`` and ``hash`` are those of the audit record the event acknowledges, or null when
the event has none (a lockdown notice published before its record, a skipped file, ...).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

SCHEMA_VERSION: Final = 1

# type -> category; the category decides who may see it (see docs/events.md, "Roles").
TYPES: Final[dict[str, str]] = {
    "index": "index", "delete": "index", "move": "index", "touch": "index", "skip": "index",
    "lockdown": "lockdown", "unlock": "lockdown",
    "snapshot": "snapshot", "restore": "snapshot",
    "agent_start": "agent", "agent_exit": "agent", "agent_restart": "agent", "agent_restore": "agent",
    "agent_degraded": "agent", "agent_hung": "agent",
    "audit": "audit",
    "secret_set": "secret", "secret_rm": "secret",
}
# Keys of ``data`` that may carry file text; a viewer never receives them.
TEXT_KEYS: Final = frozenset({"text", "snippet", "content"})

_HASH = re.compile(r"[0-9a-f]{64}")
_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")
ENVELOPE: Final = frozenset({"v", "type", "agency_id", "ts", "seq", "hash", "data"})

Event = dict[str, Any]


class SchemaError(ValueError):
    """An event that does not follow the schema."""


def now_ts() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_event(event_type: str, agency_id: str, data: Mapping[str, Any] | None = None, *,
               seq: int | None = None, hash: str | None = None, ts: str | None = None) -> Event:
    """Build (and check) one event of the schema."""
    event: Event = {"v": SCHEMA_VERSION, "type": event_type, "agency_id": agency_id, "ts": ts or now_ts(),
                    "seq": seq, "hash": hash, "data": dict(data or {})}
    validate(event)
    return event


def audit_event(record: Mapping[str, Any]) -> Event:
    """The event carrying one KBL-1 audit record whole (its own seq and hash, the record in ``data``)."""
    return make_event("audit", str(record["agency_id"]), {"record": dict(record)}, seq=int(record["seq"]),
                      hash=str(record["hash"]), ts=str(record["ts"]))


def category(event: Mapping[str, Any]) -> str:
    """The category of an event's type (``other`` for a type this version does not list)."""
    return TYPES.get(str(event.get("type")), "other")


def validate(event: Mapping[str, Any]) -> None:
    """Raise :class:`SchemaError` naming the first field that breaks the schema."""
    if not isinstance(event, Mapping):
        raise SchemaError("an event must be a JSON object")
    extra = set(event) - ENVELOPE
    if extra:
        raise SchemaError(f"unknown envelope field(s): {', '.join(sorted(extra))}")
    missing = ENVELOPE - set(event)
    if missing:
        raise SchemaError(f"missing envelope field(s): {', '.join(sorted(missing))}")
    if event["v"] != SCHEMA_VERSION or isinstance(event["v"], bool):
        raise SchemaError(f"v must be {SCHEMA_VERSION}")
    if not isinstance(event["type"], str) or not _TYPE.fullmatch(event["type"]):
        raise SchemaError("type must match ^[a-z][a-z0-9_]{0,63}$")
    if not isinstance(event["agency_id"], str) or not event["agency_id"]:
        raise SchemaError("agency_id must be a non-empty string")
    if not isinstance(event["ts"], str) or not _TS.fullmatch(event["ts"]):
        raise SchemaError("ts must be RFC 3339 UTC ending in Z")
    seq, digest = event["seq"], event["hash"]
    if (seq is None) != (digest is None):
        raise SchemaError("seq and hash are both set or both null")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**53):
        raise SchemaError("seq must be an integer in [0, 2^53)")
    if digest is not None and (not isinstance(digest, str) or not _HASH.fullmatch(digest)):
        raise SchemaError("hash must be 64 lowercase hex digits")
    if not isinstance(event["data"], dict):
        raise SchemaError("data must be an object")


def without_text(event: Event) -> Event:
    """A copy of ``event`` with file text removed from ``data`` (what a viewer receives)."""
    data = event.get("data")
    if not isinstance(data, dict) or not TEXT_KEYS & set(data):
        return event
    return {**event, "data": {k: v for k, v in data.items() if k not in TEXT_KEYS}}
