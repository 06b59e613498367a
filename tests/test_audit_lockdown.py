"""Lockdown: one agency's broken chain locks it alone; only an audited unlock ends it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from koradaemon.audit.lockdown import LockdownRegistry
from koradaemon.audit.manager import AuditManager
from koradaemon.audit.segments import list_segments, segment_path
from koradaemon.audit.verify import verify_log
from koradaemon.errors import LockdownError, UsageError


def break_descriptor(fd: int) -> None:
    """Replace ``fd`` by a read-only descriptor, so writes to it fail with EBADF (a real OS error)."""
    ro = os.open(os.devnull, os.O_RDONLY)
    os.dup2(ro, fd)
    os.close(ro)


def manager(tmp_path: Path, lockdown: LockdownRegistry | None = None, **kw: Any) -> AuditManager:
    m = AuditManager(audit_root=tmp_path / "audit", db_path=tmp_path / "kora_kernel.db", agency_ids=["a", "b"],
                     lockdown=lockdown, **kw)
    m.open_all()
    return m


def fill(m: AuditManager, agency: str, n: int) -> None:
    for i in range(n):
        m.append(agency, "index", {"path": f"{agency}{i}.md", "i": i})


def corrupt(tmp_path: Path, agency: str, old: bytes, new: bytes, segment: int = 1) -> None:
    seg = segment_path(tmp_path / "audit" / agency, segment)
    data = seg.read_bytes()
    assert old in data
    seg.write_bytes(data.replace(old, new, 1))


def records(tmp_path: Path, agency: str) -> list[dict[str, object]]:
    d = tmp_path / "audit" / agency
    return [json.loads(x) for n in list_segments(d) for x in segment_path(d, n).read_bytes().splitlines()]


def test_tamper_on_start_locks_only_that_agency(tmp_path: Path) -> None:
    m = manager(tmp_path)
    fill(m, "a", 5)
    fill(m, "b", 5)
    m.close()
    corrupt(tmp_path, "a", b'"i":4', b'"i":9')
    events: list[tuple[str, bool]] = []
    reg = LockdownRegistry(tmp_path / "kora_kernel.db")
    reg.add_listener(lambda a, locked: events.append((a, locked)))
    m = manager(tmp_path, lockdown=reg)
    try:
        assert events == [("a", True)]
        assert reg.is_locked("a") and not reg.is_locked("b")
        assert reg.locked()["a"]["seq"] == 5 and "tamper" in reg.locked()["a"]["reason"]
        with pytest.raises(LockdownError):
            m.append("a", "index", {"i": 6})
        assert m.append("b", "index", {"i": 6}).seq == 6
        results = m.verify()
        assert not results["a"].ok and results["a"].first_bad_seq == 5 and results["b"].ok
        assert m.heads()["a"] is not None and m.heads()["a"]["open"] is False  # type: ignore[index]
    finally:
        m.close()
        reg.close()


def test_lockdown_survives_a_restart(tmp_path: Path) -> None:
    m = manager(tmp_path)
    m.lock("a", "operator request")
    m.close()
    m = manager(tmp_path)
    try:
        assert m.lockdown.is_locked("a")
        with pytest.raises(LockdownError):
            m.append("a", "index", {})
        recs = records(tmp_path, "a")
        assert recs[-1]["type"] == "lockdown" and recs[-1]["data"] == {"reason": "operator request"}
        rec = m.unlock("a", "checked by ops")
        assert rec.seq == recs[-1]["seq"] + 1  # type: ignore[operator]
        assert m.append("a", "index", {"i": 1}).seq == rec.seq + 1
    finally:
        m.close()


def test_unlock_quarantines_the_damage_and_the_chain_verifies_again(tmp_path: Path) -> None:
    m = manager(tmp_path, segment_max_bytes=600)
    fill(m, "a", 12)
    m.close()
    agency_dir = tmp_path / "audit" / "a"
    segs = list_segments(agency_dir)
    assert len(segs) >= 3
    bad_seg = segs[1]
    first_rec = json.loads(segment_path(agency_dir, bad_seg).read_bytes().splitlines()[1])
    corrupt(tmp_path, "a", b'"i":' + str(first_rec["data"]["i"]).encode(), b'"i":77', bad_seg)  # type: ignore[index]
    m = manager(tmp_path, segment_max_bytes=600, full_verify_on_start=False)
    try:
        # a start-up check from the anchor only does not see it: the full verify on demand does
        assert not m.lockdown.is_locked("a")
        result = m.verify("a")["a"]
        assert not result.ok and result.first_bad_seq == first_rec["seq"]
        assert m.lockdown.is_locked("a")
        with pytest.raises(UsageError):
            m.unlock("b", "not locked")
        with pytest.raises(UsageError):
            m.unlock("a", "  ")
        rec = m.unlock("a", "damage accepted after review")
        assert not m.lockdown.is_locked("a")
        unlock = records(tmp_path, "a")[-1]
        assert unlock["type"] == "unlock" and unlock["seq"] == rec.seq == first_rec["seq"]
        data = unlock["data"]
        assert data["last_good_seq"] == first_rec["seq"] - 1 and data["first_bad_seq"] == first_rec["seq"]  # type: ignore[index]
        assert data["reason"] == "damage accepted after review" and data["lockdown_reason"].startswith("tamper")  # type: ignore[index]
        quarantined = data["quarantined"]  # type: ignore[index]
        assert len(quarantined) == len(segs) - 1
        assert all((agency_dir / q).is_file() for q in quarantined)
        full = verify_log(agency_dir, "a", anchor=m.anchors.load("a"))
        assert full.ok and full.head_seq == rec.seq
        fill(m, "a", 3)
        assert m.verify("a")["a"].ok
    finally:
        m.close()


def test_unlock_after_truncation_reanchors_and_records_the_lost_head(tmp_path: Path) -> None:
    m = manager(tmp_path)
    fill(m, "a", 6)
    m.close()
    seg = segment_path(tmp_path / "audit" / "a", 1)
    lines = seg.read_bytes().splitlines(keepends=True)
    seg.write_bytes(b"".join(lines[:-2]))
    m = manager(tmp_path)
    try:
        assert m.lockdown.is_locked("a")
        m.unlock("a", "rolled back by a restore; accepted")
        data = records(tmp_path, "a")[-1]["data"]
        assert data["previous_anchor_seq"] == 6 and data["last_good_seq"] == 4  # type: ignore[index]
        assert "quarantined" not in data  # type: ignore[operator]
        assert m.verify("a")["a"].ok
    finally:
        m.close()


def test_tamper_found_by_verify_on_a_live_log_locks_it(tmp_path: Path) -> None:
    m = manager(tmp_path)
    try:
        fill(m, "a", 4)
        corrupt(tmp_path, "a", b'"i":1', b'"i":8')
        assert not m.verify("a")["a"].ok
        assert m.lockdown.is_locked("a") and not m.lockdown.is_locked("b")
        with pytest.raises(LockdownError):
            m.append("a", "index", {})
    finally:
        m.close()


def test_a_failed_fsync_locks_the_agency(tmp_path: Path) -> None:
    m = manager(tmp_path)
    try:
        fill(m, "a", 2)
        alog = m.logs["a"]
        break_descriptor(alog._fd)
        with pytest.raises(Exception, match="failed"):
            m.append("a", "index", {"i": 3})
        assert m.lockdown.is_locked("a") and "write failed" in m.lockdown.locked()["a"]["reason"]
        rec = m.unlock("a", "disk replaced")
        assert rec.seq == 3 and m.verify("a")["a"].ok
    finally:
        m.close()


def test_status_heads_and_cli_lines(tmp_path: Path) -> None:
    from koradaemon.audit.report import format_verify_result

    m = manager(tmp_path)
    try:
        fill(m, "a", 2)
        heads = m.heads()
        assert heads["a"] is not None and heads["a"]["seq"] == 2 and heads["a"]["open"] is True
        ok = m.verify("a")["a"]
        assert format_verify_result(ok) == "OK agency=a records=3 head=2"
        corrupt(tmp_path, "a", b'"i":1', b'"i":5')
        line = format_verify_result(m.verify("a")["a"])
        assert line.startswith("FAIL agency=a first_bad_seq=2 segment=1 offset=") and "reason=hash" in line
        with pytest.raises(UsageError):
            m.verify("zzz")
    finally:
        m.close()


@pytest.mark.parametrize("damage", ["genesis", "all_gone"])
def test_unlock_when_nothing_good_is_left_restarts_at_genesis(tmp_path: Path, damage: str) -> None:
    m = manager(tmp_path)
    fill(m, "a", 3)
    m.close()
    agency_dir = tmp_path / "audit" / "a"
    if damage == "genesis":
        corrupt(tmp_path, "a", b'"format":"KBL-1"', b'"format":"KBL-2"')
    else:
        segment_path(agency_dir, 1).unlink()
    m = manager(tmp_path)
    try:
        assert m.lockdown.is_locked("a")
        rec = m.unlock("a", "start over")
        recs = records(tmp_path, "a")
        assert [r["type"] for r in recs] == ["genesis", "unlock"] and rec.seq == 1
        data = recs[1]["data"]
        assert data["first_bad_seq"] == 0 and data["last_good_seq"] is None  # type: ignore[index]
        assert data["previous_anchor_seq"] == 3  # type: ignore[index]
        assert len(data["quarantined"]) == (1 if damage == "genesis" else 0)  # type: ignore[index,arg-type]
        assert m.verify("a")["a"].ok
    finally:
        m.close()


def test_agency_ids_that_would_leave_the_audit_root_are_refused(tmp_path: Path) -> None:
    from koradaemon.audit.anchor import AnchorStore
    from koradaemon.audit.writer import AuditLog

    anchors = AnchorStore(tmp_path / "k.db")
    try:
        for bad in ("..", "a/b", ""):
            with pytest.raises(UsageError):
                AuditLog(tmp_path / "audit" / "x", bad, anchors)
    finally:
        anchors.close()
