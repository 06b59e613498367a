"""Snapshots of a live WAL database are consistent (SQLite backup API); caches and locks are left out."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for

from koradaemon.vault.consistent import Excluder
from koradaemon.vault.keys import KeyHolder
from koradaemon.vault.snapshots import SnapshotStore

ROWS_PER_TXN = 50
WRITER = f"""
import os, sqlite3, sys
state, stop = sys.argv[1], sys.argv[2]
db = sqlite3.connect(os.path.join(state, "app.sqlite"), isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA wal_autocheckpoint=0")  # every committed row stays in the -wal file
db.execute("CREATE TABLE IF NOT EXISTS t(txn INTEGER, k INTEGER, pad BLOB)")
txn = 0
while not os.path.exists(stop):
    txn += 1
    db.execute("BEGIN")
    for k in range({ROWS_PER_TXN}):
        db.execute("INSERT INTO t VALUES (?, ?, ?)", (txn, k, os.urandom(2000)))
    db.execute("COMMIT")
    if txn == 3:
        open(os.path.join(state, "..", "writer-ready"), "w").close()
"""
EXCLUDE = ("*.lock", "cache/", "logs/*.log")


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[KeyHolder]:
    pw = tmp_path / "pass"
    pw.write_bytes(b"correct horse battery staple\n")
    pw.chmod(0o600)
    holder = KeyHolder(pw, idle_lock_s=3600)
    holder.unlock()
    yield holder
    holder.lock()


def test_snapshots_of_a_database_being_written_restore_whole(tmp_path: Path, keys: KeyHolder) -> None:
    state = tmp_path / "state"
    (state / "cache").mkdir(parents=True)
    (state / "cache" / "ui.bin").write_bytes(b"x" * 100_000)
    (state / "gateway.lock").write_text("123")
    (state / "logs").mkdir()
    (state / "logs" / "today.log").write_text("noise")
    (state / "logs" / "keep.json").write_text("{}")
    (state / "notes.txt").write_text("keep me")
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(state), str(stop)])
    try:
        wait_for((tmp_path / "writer-ready").exists, 30, 0.02, "writer committed")
        store = SnapshotStore(tmp_path / "snaps", keys=keys, keep_last=10, exclude=EXCLUDE)
        ids = [store.create("alpha", {"state0": state}, trigger="manual").id for _ in range(5)]
        assert writer.poll() is None, "the writer must still be running: snapshots raced live writes"
        assert (state / "app.sqlite-wal").exists()
    finally:
        stop.touch()
        writer.wait(30)
    for i, snap_id in enumerate(ids):
        target = tmp_path / f"restored{i}"
        store.restore("alpha", snap_id, "state0", target, in_place=False)
        names = sorted(p.relative_to(target).as_posix() for p in target.rglob("*"))
        assert names == ["app.sqlite", "logs", "logs/keep.json", "notes.txt"], names  # no WAL/SHM, cache, lock
        db = sqlite3.connect(target / "app.sqlite")
        try:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            txns = db.execute("SELECT txn, count(*) FROM t GROUP BY txn").fetchall()
        finally:
            db.close()
        assert len(txns) >= 3  # the rows were only in the -wal file: the copy holds them
        assert all(n == ROWS_PER_TXN for _, n in txns)  # whole transactions only, never a torn one
        assert [t for t, _ in txns] == list(range(1, len(txns) + 1))


def test_exclude_globs() -> None:
    ex = Excluder(("*.lock", "cache/", "logs/*.log", "Code Cache/"))
    assert ex.match("a/b/run.lock", is_dir=False)
    assert ex.match("x/cache", is_dir=True) and not ex.match("x/cache", is_dir=False)
    assert ex.match("logs/a.log", is_dir=False) and not ex.match("other/logs/a.log", is_dir=False)
    assert ex.match("Code Cache", is_dir=True)
    assert not ex.match("notes.txt", is_dir=False)


def test_an_excluded_database_takes_its_wal_and_shm_with_it(tmp_path: Path) -> None:
    import io
    import tarfile

    from koradaemon.vault.packing import pack_dir

    src = tmp_path / "state"
    src.mkdir()
    for name in ("old.sqlite", "old.sqlite-wal", "old.sqlite-shm", "keep.txt"):
        (src / name).write_bytes(b"x")
    buf = io.BytesIO()
    counts = pack_dir(src, buf, exclude=("old.sqlite",), scratch=tmp_path)
    buf.seek(0)
    with tarfile.open(fileobj=buf, mode="r|") as tar:
        assert [m.name for m in tar] == ["keep.txt"]
    assert counts["excluded"] == 1 and counts["files"] == 1
