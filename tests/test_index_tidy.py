"""After bulk work the writer merges the FTS5 segments it left at a quiet moment (real SQLite file)."""

from __future__ import annotations

from pathlib import Path

from conftest import wait_for

from koradaemon.index import fts
from koradaemon.index.db import immediate, open_db
from koradaemon.index.fts import merge_step
from koradaemon.index.prepare import ChunkParams, prepare_index
from koradaemon.index.retrieval import FileTexts
from koradaemon.index.store import AgencyStore
from koradaemon.index.writer import Writer

ROOT = "notes"


def test_segments_left_by_bulk_work_are_merged_when_quiet(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    open_db(db).close()
    (tmp_path / ROOT).mkdir()
    writer = Writer(db, batch_files=5)
    writer.start()
    try:
        for batch in range(6):  # six bulk transactions: six segments
            for i in range(5):
                path = tmp_path / ROOT / f"f{batch}-{i}.txt"
                path.write_text(f"word{batch}x{i} common words here")
                job = prepare_index("a", ROOT, path.name, path, None, ChunkParams(), bulk=True)
                assert job is not None
                writer.submit(job)
            writer.flush()
        wait_for(lambda: writer.counters["tidy_steps"] >= 1, interval=0.02, what="a merge step when quiet")
        writer.flush()
    finally:
        writer.stop()
    conn = open_db(db)
    try:
        with immediate(conn):
            assert not merge_step(conn, -64), "one segment left: nothing to merge"
        hits = AgencyStore(conn, "a", FileTexts(tmp_path, (ROOT,))).search("word3x4", 10)
        assert [h.path for h in hits] == ["f3-4.txt"]
    finally:
        conn.close()


def test_merge_step_says_whether_there_was_anything_to_merge(tmp_path: Path) -> None:
    conn = open_db(tmp_path / "k.db")
    try:
        assert not merge_step(conn, -64)  # no FTS table yet
        with immediate(conn):
            name = fts.ensure(conn, "a")
        for i in range(6):  # one segment per transaction
            with immediate(conn):
                conn.execute(f"INSERT INTO {name}(rowid, body, extra) VALUES (?, ?, '')", (i + 1, f"word{i} common"))
        with immediate(conn):
            assert merge_step(conn, -64)
        while True:
            with immediate(conn):
                if not merge_step(conn, -64):
                    break
        assert [r[0] for r in conn.execute(f"SELECT rowid FROM {name} WHERE {name} MATCH 'word4'")] == [5]
        conn.execute(f"INSERT INTO {name}({name}) VALUES ('integrity-check')")
    finally:
        conn.close()
