"""WAL checkpoints on a thread of their own, not inside the writer's commits (real SQLite files)."""

from __future__ import annotations

import threading
from pathlib import Path

import apsw
from conftest import wait_for

from koradaemon.index.checkpointer import Checkpointer
from koradaemon.index.db import open_db
from koradaemon.index.writer import Writer


def fill(conn: apsw.Connection, commits: int) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS t(x BLOB)")
    for _ in range(commits):
        with conn:
            conn.execute("INSERT INTO t VALUES (randomblob(8000))")


def test_the_checkpoint_runs_on_its_own_thread_and_empties_the_wal(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    open_db(db).close()
    cp = Checkpointer(db, wal_pages=20)
    seen: list[str] = []
    real = cp.note
    cp.note = lambda conn, name, pages: (seen.append(threading.current_thread().name), real(conn, name, pages))[1]  # type: ignore[method-assign]
    cp.start()
    conn = open_db(db)
    try:
        cp.hook(conn)
        fill(conn, 30)  # ~155 pages: past the mark
        wait_for(lambda: cp.checkpoints >= 1 and not cp.asked(), what="the asked-for checkpoint")
        cp.stop()  # waits for the checkpoint under way, which started after the last commit
        fill(conn, 1)  # the WAL starts over after a complete checkpoint: it holds little, not all 30 commits
        assert conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1] < 100
        assert set(seen) == {threading.current_thread().name}  # the hook only noted it on the committing thread
    finally:
        conn.close()
        cp.stop()
    assert not cp.alive() and cp.errors == 0


def test_without_its_thread_the_hook_checkpoints_in_place(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    open_db(db).close()
    cp = Checkpointer(db, wal_pages=20)
    conn = open_db(db)
    conn.set_wal_hook(cp.note)  # as if the thread had died after the hook was set
    fill(conn, 30)  # ~155 WAL pages without any checkpoint
    assert conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1] < 40
    conn.close()


def test_writer_starts_and_stops_its_checkpointer(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    open_db(db).close()
    writer = Writer(db)
    writer.start()
    wait_for(writer.checkpointer.alive, what="the checkpointer thread running")
    writer.flush()
    writer.stop()
    assert not writer.checkpointer.alive()
