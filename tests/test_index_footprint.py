"""The database gives back the space bulk work leaves behind; an older database still opens as it is."""

from __future__ import annotations

import time
from pathlib import Path

import apsw

from koradaemon.index.db import FREE_PAGES_KEPT, apply_migrations, give_back_free_pages, integrity_ok, open_db
from koradaemon.index.jobs import DeleteJob
from koradaemon.index.prepare import ChunkParams, prepare_index
from koradaemon.index.store import AgencyStore
from koradaemon.index.writer import Writer

ROOT = "notes"


def test_new_database_gives_back_free_pages_when_the_writer_checkpoints(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    conn = open_db(db)
    assert conn.pragma("auto_vacuum") == 2  # incremental: chosen when the file is created
    (tmp_path / ROOT / "d").mkdir(parents=True)
    writer = Writer(db, batch_files=500)
    writer.start()
    try:
        for i in range(300):
            path = tmp_path / ROOT / "d" / f"f{i}.txt"
            path.write_text(f"file {i} " + " ".join(f"t{i}x{j}" for j in range(2000)))  # words of its own
            job = prepare_index("a", ROOT, f"d/f{i}.txt", path, None, ChunkParams(), bulk=True)
            assert job is not None
            writer.submit(job)
        writer.flush()
        for _ in range(500):  # the writer's checkpointer thread may hold the checkpoint lock a moment
            if conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0:
                break
            time.sleep(0.01)
        full = db.stat().st_size
        assert full > 4 << 20, full  # 300 files of 16 KB, each word indexed (the text is not kept)
        writer.submit(DeleteJob("a", ROOT, "d", tree=True, bulk=True))
        writer.flush()
        assert AgencyStore(conn, "a").known_files(ROOT) == {}
    finally:
        writer.stop()  # the writer's last checkpoint gives the free pages back
    assert conn.pragma("freelist_count") <= FREE_PAGES_KEPT
    assert db.stat().st_size < full // 2, (db.stat().st_size, full)
    assert integrity_ok(conn)
    conn.close()


def test_database_without_auto_vacuum_keeps_its_free_pages_and_works(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    raw = apsw.Connection(str(db))
    raw.pragma("journal_mode", "wal")
    apply_migrations(raw)  # as an older koradaemon created it: auto_vacuum none
    raw.execute("CREATE TABLE filler(x BLOB)")
    with raw:
        raw.executemany("INSERT INTO filler VALUES (?)", [(b"x" * 4000,)] * 600)
    raw.execute("DELETE FROM filler")
    raw.close()
    conn = open_db(db)
    assert conn.pragma("auto_vacuum") == 0
    free = conn.pragma("freelist_count")
    assert free > FREE_PAGES_KEPT
    assert give_back_free_pages(conn) == 0 and conn.pragma("freelist_count") == free
    assert integrity_ok(conn)
    conn.close()
