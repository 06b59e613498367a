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


def _json_line(i: int) -> str:
    import json

    return json.dumps({"event": "line", "i": i, "pad": "p" * 90}) + "\n"


def test_log_file_on_a_full_disk_holds_whole_lines_and_writes_them_in_order(small_disk: Path) -> None:
    import json

    from koradaemon.logfile import RotatingLogFile

    changes: list[tuple[str | None, str | None, int]] = []
    path = small_disk / "k.log"
    f = RotatingLogFile(path, max_bytes=16 << 20, keep_days=1, on_change=lambda *a: changes.append(a))
    try:
        f.write(_json_line(0))
        filler = fill_up(small_disk)
        for i in range(1, 1500):  # ~150 KB: more than the last page's slack, less than what is held
            f.write(_json_line(i))
        assert f.stalled is not None and f.stalled.startswith("disk full"), f.stalled
        assert [c[0] for c in changes] == [f.stalled]
        written = path.read_text()
        assert written.endswith("\n") and [json.loads(x)["i"] for x in written.splitlines()] == \
            list(range(len(written.splitlines()))), "the file ends with a whole line"
        filler.unlink()
        wait_for(lambda: f.retry() or f.stalled is None, 5, 0.05, "the held lines written")
        assert changes[-1] == (None, changes[0][0], 0)
    finally:
        f.close()
    assert [json.loads(x)["i"] for x in path.read_text().splitlines()] == list(range(1500)), "none lost, in order"


def test_log_lines_past_the_hold_limit_are_counted_in_a_line_of_their_own(small_disk: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from koradaemon import logfile

    monkeypatch.setattr(logfile, "HOLD_BYTES", 20_000)
    path = small_disk / "k.log"
    f = logfile.RotatingLogFile(path, max_bytes=16 << 20, keep_days=1)
    try:
        filler = fill_up(small_disk)
        for i in range(1000):
            f.write(_json_line(i))
        assert f.stalled is not None and 0 < f.dropped < 1000
        dropped = f.dropped
        filler.unlink()
        wait_for(lambda: f.retry() or f.stalled is None, 5, 0.05, "the held lines written")
        f.write(_json_line(1000))
    finally:
        f.close()
    events = [json.loads(x) for x in path.read_text().splitlines()]
    marks = [e for e in events if e["event"] == "log_lines_dropped"]
    assert len(marks) == 1 and marks[0]["lines"] == dropped and marks[0]["reason"].startswith("disk full")
    kept = [e["i"] for e in events if e["event"] == "line"]
    assert kept == [*range(1000 - dropped), 1000], "the oldest lines kept, then the count, then new ones"
    assert events.index(marks[0]) == 1000 - dropped


def test_outbox_rows_whose_delete_failed_for_a_full_disk_are_not_logged_twice(small_disk: Path,
                                                                               tmp_path: Path) -> None:
    """The records reach the log (on another disk), deleting their rows fails for lack of space:
    the retry checks the log first, so each record is in it exactly once."""
    from koradaemon.index import outbox
    from koradaemon.index.acknowledger import Acknowledger
    from koradaemon.index.db import open_db

    kernel = tmp_path / "kernel.db"  # anchors and lockdowns: on the ordinary disk
    lockdown = LockdownRegistry(kernel)
    mgr = AuditManager(audit_root=tmp_path / "audit", db_path=kernel, agency_ids=["a"], lockdown=lockdown,
                       group_commit_ms=0)
    mgr.open_all()
    index_db = small_disk / "k.db"
    conn = open_db(index_db)
    acks = Acknowledger(db_path=index_db, audit=mgr.append_many, appended=mgr.appended_outbox_ids)
    try:
        with conn:
            outbox.put(conn, [("a", "index", {"path": f"p{i}.md"}) for i in range(5)])
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the delete must grow the WAL
        filler = fill_up(small_disk)
        acks.start()
        acks.submit([])  # wake it
        wait_for(lambda: acks.stalled, 10, 0.02, "the outbox drain stalled")
        assert acks.stalled is not None and acks.stalled.startswith("disk full"), acks.stalled
        assert outbox.count(conn) == 5 and len(_paths(tmp_path / "audit" / "a")) == 5
        filler.unlink()
        wait_for(lambda: acks.stalled is None and outbox.count(conn) == 0, 10, 0.05, "drained after space returned")
    finally:
        acks.stop()
        conn.close()
        mgr.close()
        lockdown.close()
    assert _paths(tmp_path / "audit" / "a") == [f"p{i}.md" for i in range(5)], "each record once"
    assert acks.duplicates_skipped == 5
