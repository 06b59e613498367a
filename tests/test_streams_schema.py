"""The event schema (docs/events.md): envelope, validation, audit records as events, categories."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from koradaemon.audit.manager import AuditManager
from koradaemon.events import ALL_CATEGORIES, EventBus
from koradaemon.index.db import open_db
from koradaemon.streams.schema import SchemaError, make_event, validate, without_text

GOOD_HASH = "ab" * 32


def test_make_event_has_the_envelope() -> None:
    ev = make_event("index", "alpha", {"path": "a.md"}, seq=3, hash=GOOD_HASH, ts="2026-01-02T03:04:05.000001Z")
    assert ev == {"v": 1, "type": "index", "agency_id": "alpha", "ts": "2026-01-02T03:04:05.000001Z",
                  "seq": 3, "hash": GOOD_HASH, "data": {"path": "a.md"}}
    assert json.loads(json.dumps(ev)) == ev


@pytest.mark.parametrize(("change", "field"), [
    ({"v": 2}, "v must be"),
    ({"type": "Index"}, "type must"),
    ({"agency_id": ""}, "agency_id"),
    ({"ts": "yesterday"}, "ts must"),
    ({"seq": 1, "hash": None}, "both set or both null"),
    ({"seq": -1, "hash": GOOD_HASH}, "seq must"),
    ({"seq": True, "hash": GOOD_HASH}, "seq must"),
    ({"seq": 1, "hash": "AB" * 32}, "hash must"),
    ({"data": []}, "data must"),
    ({"extra": 1}, "unknown envelope"),
])
def test_validate_names_the_broken_field(change: dict[str, object], field: str) -> None:
    ev = make_event("index", "alpha", {"path": "a.md"})
    with pytest.raises(SchemaError, match=field):
        validate({**ev, **change})


def test_validate_requires_every_envelope_field() -> None:
    ev = make_event("skip", "alpha")
    del ev["seq"]
    with pytest.raises(SchemaError, match="missing envelope field"):
        validate(ev)


def test_viewer_copy_drops_file_text_only() -> None:
    ev = make_event("index", "alpha", {"path": "a.md", "text": "secret body", "snippet": "x"})
    assert without_text(ev)["data"] == {"path": "a.md"}
    assert ev["data"]["text"] == "secret body"  # the original is untouched


def test_audit_records_reach_only_audit_subscribers_with_their_chain(tmp_path: Path) -> None:
    open_db(tmp_path / "k.db").close()
    bus = EventBus()
    plain = bus.subscribe("alpha")
    auditor = bus.subscribe("alpha", categories=ALL_CATEGORIES)
    mgr = AuditManager(audit_root=tmp_path / "audit", db_path=tmp_path / "k.db", agency_ids=["alpha"],
                       on_commit=bus.on_audit_commit)
    mgr.open_all()
    try:
        rec = mgr.append("alpha", "index", {"path": "a.md"})
    finally:
        mgr.close()
    got = []
    while (ev := auditor.get(1)) is not None:
        got.append(ev)
        if ev["seq"] == rec.seq:
            break
    ev = got[-1]
    validate(ev)
    assert ev["type"] == "audit" and ev["seq"] == rec.seq and ev["hash"] == rec.hash
    record = ev["data"]["record"]
    # the hash rule of KBL-1, recomputed here from the record the event carries
    body = {k: v for k, v in record.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert hashlib.sha256(canonical.encode()).hexdigest() == rec.hash
    assert record["data"] == {"path": "a.md"} and record["type"] == "index"
    assert plain.get(0.05) is None  # a default subscription never receives whole audit records
    plain.close()
    auditor.close()


def test_emit_publishes_schema_events() -> None:
    bus = EventBus()
    sub = bus.subscribe("alpha")
    assert bus.emit("alpha", "lockdown", {"reason": "x"}) == 1
    ev = sub.get(1)
    assert ev is not None
    validate(ev)
    assert ev["type"] == "lockdown" and ev["seq"] is None and ev["data"] == {"reason": "x"}
    sub.close()


def test_subscribe_with_audit_streams_whole_records_and_agent_free_events(tmp_path: Path) -> None:
    from conftest import DaemonProc

    from koradaemon.control.client import ControlClient

    d = DaemonProc(tmp_path)
    d.start()
    try:
        token = (tmp_path / "run" / "tokens" / "alpha.token").read_text().strip()
        stream = ControlClient(tmp_path / "run" / "koradaemon.sock").stream("subscribe", "alpha", token,
                                                                            idle_timeout=30, audit=True)
        assert next(stream)["type"] == "subscribed"
        (tmp_path / "alpha" / "notes" / "s.md").write_text("subscribed with audit: rowan\n")
        seen: dict[str, dict[str, object]] = {}
        for ev in stream:
            if ev is None:
                continue
            validate(ev)
            if ev["type"] == "index":
                seen["index"] = ev
            if ev["type"] == "audit" and ev["data"]["record"]["type"] == "index":
                seen["audit"] = ev
            if len(seen) == 2:
                break
        stream.close()
        assert seen["index"]["seq"] == seen["audit"]["seq"] and seen["index"]["hash"] == seen["audit"]["hash"]
    finally:
        assert d.stop() == 0
