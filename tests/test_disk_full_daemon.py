"""Disk full at the daemon level: the index database, the snapshots and the log file, each on a small
tmpfs the test mounts (the rest of the data root on the ordinary disk, so one part fills up at a time).

Must hold for each: status (``stalled``) and the log say "disk full", nothing locks down, nothing is
corrupted, skipped or lost, and everything resumes by itself once space returns.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
from conftest import BASE_CONFIG, DaemonProc, wait_for
from diskutil import fill_up, small_tmpfs

from koradaemon.errors import SnapshotError

INDEX_LINE = "index: {workers: 1, optimize_idle_s: 5}"
LOG_LINE = "log: {level: debug, format: json}"
VAULT_KEY = "keep_last: 3}"


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Any]:
    """A daemon whose config had ``old`` replaced by ``new`` (to put one part on the small disk)."""
    made: list[DaemonProc] = []

    def make(old: str, new: str) -> DaemonProc:
        root = tmp_path / "data"
        root.mkdir()
        text = BASE_CONFIG.format(extra="", vault="true")
        assert old in text
        (root / "koradaemon.yaml").write_text(text.replace(old, new))
        d = DaemonProc(root)
        made.append(d)
        return d

    yield make
    for d in made:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def stalled(d: DaemonProc, part: str) -> dict[str, Any] | None:
    st = d.status()
    return st if st is not None and part in st["stalled"] else None


def cleared(d: DaemonProc, part: str) -> dict[str, Any] | None:
    st = d.status()
    return st if st is not None and part not in st["stalled"] else None


def audit_records(d: DaemonProc, agency: str = "alpha") -> list[dict[str, Any]]:
    return [json.loads(line) for seg in sorted((d.root / "audit" / agency).glob("audit-*.jsonl"))
            for line in seg.read_text().splitlines() if line.strip()]


def no_lockdown_events(d: DaemonProc) -> None:
    names = {str(e.get("event")) for e in d.log_events()}
    assert not {n for n in names if "lockdown" in n or "tamper" in n}, names


def test_a_full_index_database_holds_the_change_and_indexes_it_when_space_returns(make_daemon: Any) -> None:
    d: DaemonProc = make_daemon(INDEX_LINE, INDEX_LINE[:-1] + ", database: disk/kora_kernel.db}")
    notes = d.root / "alpha" / "notes"
    (notes / "a.md").write_text("written before the disk filled up: lentils\n")
    with small_tmpfs(d.root / "disk", "4m") as disk:
        d.start()
        assert d.search("lentils")
        # after the start-up crawl the writer truncates the WAL: every later write must grow a file
        wait_for(lambda: (disk / "kora_kernel.db-wal").stat().st_size == 0, 20, 0.05, "WAL truncated")
        filler = fill_up(disk)
        rng = random.Random(11)
        words = " ".join(f"w{rng.getrandbits(40):x}" for _ in range(30_000))  # ~400 KB of distinct terms
        (notes / "b.md").write_text(f"written while the disk is full: sorghum\n{words}\n")
        st = wait_for(lambda: stalled(d, "index"), 30, 0.05, "the index write stalled")
        assert st["stalled"]["index"].startswith("disk full"), st["stalled"]
        assert st["lockdowns"] == [] and not st["agencies"]["alpha"]["locked"], "an I/O error is never a lockdown"
        assert d.search("lentils"), "searching goes on while the writer waits for space"
        assert d.search("sorghum") == []
        human = d.cli("status")
        assert human.returncode == 75 and "stalled index: disk full" in human.stdout, human.stdout
        assert "health: degraded" in human.stdout and "LOCKDOWN" not in human.stdout
        filler.unlink()  # space returns; nobody touches b.md again
        wait_for(lambda: d.search("sorghum"), 30, 0.05, "b.md indexed once space returned")
        st = wait_for(lambda: cleared(d, "index"), 10, 0.05, "the stall cleared")
        alpha = st["agencies"]["alpha"]
        assert (alpha["files"], alpha["skipped"], alpha["skipped_reasons"]) == (2, 0, {}), alpha
        assert d.stop() == 0
        conn = apsw.Connection(str(disk / "kora_kernel.db"), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            conn.close()
        res = d.cli("audit", "verify", "--agency", "alpha")  # (the anchor is in the database)
        assert res.returncode == 0, res.stdout + res.stderr
    events = d.log_events()
    held = [e for e in events if e.get("event") == "index_write_stalled"]
    assert held and held[0]["reason"].startswith("disk full"), held
    assert any(e.get("event") == "index_write_resumed" for e in events)
    no_lockdown_events(d)
    indexed = [r["data"]["path"] for r in audit_records(d) if r["type"] == "index"]
    assert sorted(indexed) == ["a.md", "b.md"], "each change acknowledged once, none lost"


def test_a_snapshot_that_failed_for_lack_of_space_is_taken_when_space_returns(make_daemon: Any) -> None:
    d: DaemonProc = make_daemon(VAULT_KEY, "keep_last: 3, dir: disk/snapshots}")
    blob = os.urandom(256 << 10)
    (d.root / "alpha" / "state" / "blob.bin").write_bytes(blob)
    with small_tmpfs(d.root / "disk", "2m") as disk:
        d.start()
        filler = fill_up(disk)
        with pytest.raises(SnapshotError, match="disk full"):
            d.client_call("snapshot", "alpha")
        st = d.status()
        assert st is not None and st["stalled"]["snapshots"].startswith("disk full"), st and st["stalled"]
        assert st["lockdowns"] == []
        assert d.client_call("snapshots", "alpha")["snapshots"] == []
        leftovers = [p.name for p in (disk / "snapshots" / "alpha").iterdir() if p.name.startswith(".tmp-")]
        assert leftovers == [], "a failed snapshot leaves nothing half-written"
        filler.unlink()
        snaps = wait_for(lambda: d.client_call("snapshots", "alpha")["snapshots"], 30, 0.1,
                         "the snapshot taken again by itself")
        wait_for(lambda: cleared(d, "snapshots"), 10, 0.05, "the stall cleared")
        assert len(snaps) == 1
        d.client_call("restore", "alpha", snapshot=snaps[0]["id"], target="restored")  # decrypts and checks it
        assert (d.root / "restored" / "state0" / "blob.bin").read_bytes() == blob
        assert d.stop() == 0
    events = d.log_events()
    failed = [e for e in events if e.get("event") == "snapshot_failed"]
    assert failed and failed[0]["reason"].startswith("disk full"), failed
    assert any(e.get("event") == "snapshots_resumed" for e in events)
    no_lockdown_events(d)
    audited = [(r["data"]["snapshot"], r["data"]["trigger"]) for r in audit_records(d) if r["type"] == "snapshot"]
    assert audited[0] == (snaps[0]["id"], "manual") and [t for _, t in audited[1:]] == ["shutdown"], audited


def test_the_log_file_on_a_full_disk_holds_its_lines_and_writes_them_when_space_returns(make_daemon: Any) -> None:
    d: DaemonProc = make_daemon(LOG_LINE, LOG_LINE[:-1] + ", file: disk/koradaemon.log}")
    with small_tmpfs(d.root / "disk", "1m") as disk:
        d.start()
        filler = fill_up(disk)
        # every control connection logs a line at debug level: status calls are enough to meet the full disk
        st = wait_for(lambda: stalled(d, "log_file"), 20, 0.05, "the log file stalled")
        assert st["stalled"]["log_file"].startswith("disk full"), st["stalled"]
        (d.root / "alpha" / "notes" / "c.md").write_text("indexed while the log disk is full: sorghum\n")
        wait_for(lambda: d.search("sorghum"), 20, 0.05, "indexing goes on")
        snap = d.client_call("snapshot", "alpha")["snapshot"]["id"]  # logs snapshot_taken while stalled
        filler.unlink()
        wait_for(lambda: cleared(d, "log_file"), 10, 0.05, "the stall cleared")
        assert d.stop() == 0
        lines = (disk / "koradaemon.log").read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line whole: no half line left by a failed write
    assert any(e.get("event") == "snapshot_taken" and e.get("id") == snap for e in events), \
        "lines logged during the stall are in the file"
    assert any(e.get("event") == "daemon_stopped" for e in events), "and the lines after it"
    console = d.log_events()
    stall = [e for e in console if e.get("event") == "log_file_stalled"]
    assert stall and stall[0]["reason"].startswith("disk full"), stall
    assert any(e.get("event") == "log_file_resumed" for e in console)
    no_lockdown_events(d)


def test_a_data_root_that_fills_up_whole_recovers_by_itself_without_lockdown(tmp_path: Path) -> None:
    """Everything (database, audit log, log file, the roots) on one small disk that fills up."""
    with small_tmpfs(tmp_path / "data", "8m") as root:
        d = DaemonProc(root)
        try:
            notes = root / "alpha" / "notes"
            (notes / "a.md").write_text("written before the disk filled up: lentils\n")
            d.start()
            assert d.search("lentils")
            spare = root / "spare.bin"
            spare.write_bytes(b"\0" * (400 << 10))
            filler = fill_up(root)
            spare.unlink()  # room for the new file, not for indexing it as well
            rng = random.Random(12)
            words = " ".join(f"w{rng.getrandbits(40):x}" for _ in range(20_000))
            (notes / "b.md").write_text(f"written while the disk is full: sorghum\n{words}\n")
            st = wait_for(lambda: (s := d.status()) and s["stalled"] and s, 30, 0.05, "a part stalled")
            assert all(why.startswith("disk full") for why in st["stalled"].values()), st["stalled"]
            assert st["lockdowns"] == []
            filler.unlink()
            wait_for(lambda: d.search("sorghum"), 30, 0.05, "b.md indexed once space returned")
            st = wait_for(lambda: (s := d.status()) and not s["stalled"] and s, 15, 0.05, "every stall cleared")
            assert st["lockdowns"] == [] and st["agencies"]["alpha"]["skipped"] == 0
            assert d.stop() == 0
            res = d.cli("audit", "verify", "--agency", "alpha")
            assert res.returncode == 0, res.stdout + res.stderr
            indexed = sorted(r["data"]["path"] for r in audit_records(d) if r["type"] == "index")
            assert indexed == ["a.md", "b.md"]
            conn = apsw.Connection(str(root / "kora_kernel.db"), flags=apsw.SQLITE_OPEN_READONLY)
            try:
                assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            finally:
                conn.close()
            no_lockdown_events(d)
        finally:
            if d.proc is not None and d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait()
