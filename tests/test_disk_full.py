"""Disk full is not tampering: on a real small tmpfs, audit appends stall (reported as "disk full"),
nothing acknowledged is lost, no lockdown, and everything resumes by itself when space returns."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for
from diskutil import fill_up, small_tmpfs

from koradaemon.audit.lockdown import LockdownRegistry
from koradaemon.audit.manager import AuditManager
from koradaemon.audit.verify import verify_log


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk") as mnt:
        yield mnt


def test_audit_appends_stall_on_a_full_disk_and_resume_without_lockdown(small_disk: Path) -> None:
    db = small_disk / "kora_kernel.db"
    lockdown = LockdownRegistry(db)
    mgr = AuditManager(audit_root=small_disk / "audit", db_path=db, agency_ids=["a"], lockdown=lockdown,
                       group_commit_ms=0)
    mgr.open_all()
    try:
        for i in range(10):
            mgr.append("a", "index", {"path": f"before{i}.md"})
        filler = fill_up(small_disk)
        done: list[int] = []
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                for i in range(200):
                    mgr.append("a", "index", {"path": f"during{i}.md", "pad": "x" * 400})
                    done.append(i)
            except BaseException as exc:  # surfaced by the assertions below
                errors.append(exc)

        t = threading.Thread(target=writer, name="test-appender")
        t.start()
        heads = wait_for(lambda: (h := mgr.heads()["a"]) and h.get("stalled") and h, 20, 0.02, "stalled")
        assert heads["stalled"].startswith("disk full"), heads
        assert not lockdown.is_locked("a"), "an I/O error must never lock the agency down"
        acknowledged = len(done)
        filler.unlink()  # space returns
        t.join(60)
        assert not t.is_alive() and not errors, errors
        assert done == list(range(200)) and acknowledged < 200
        assert mgr.heads()["a"]["stalled"] is None
        assert not lockdown.is_locked("a")
    finally:
        mgr.close()
        lockdown.close()
    result = verify_log(small_disk / "audit" / "a", "a")
    assert result.ok, result.reason
    paths = [r for r in _paths(small_disk / "audit" / "a")]
    assert paths == [f"before{i}.md" for i in range(10)] + [f"during{i}.md" for i in range(200)]


def _paths(agency_dir: Path) -> list[str]:
    import json

    out = []
    for seg in sorted(agency_dir.glob("audit-*.jsonl")):
        for line in seg.read_text().splitlines():
            rec = json.loads(line)
            if rec["type"] == "index":
                out.append(rec["data"]["path"])
    return out


def test_a_full_disk_at_start_is_a_clear_error_not_a_lockdown(small_disk: Path) -> None:
    db = small_disk / "kora_kernel.db"
    lockdown = LockdownRegistry(db)
    fill_up(small_disk)
    mgr = AuditManager(audit_root=small_disk / "audit", db_path=db, agency_ids=["new"], lockdown=lockdown)
    try:
        from koradaemon.errors import AuditError

        with pytest.raises(AuditError, match="disk full"):
            mgr.open_all()
        assert not lockdown.is_locked("new")
    finally:
        mgr.close()
        lockdown.close()
    assert not os.path.exists(small_disk / "audit" / "new" / "audit-000001.jsonl.tmp")
