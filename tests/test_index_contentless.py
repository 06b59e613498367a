"""The full-text tables keep no text: hits are read from their files, stale ones say so, and
rewritten or removed files leave nothing behind in the index."""

from __future__ import annotations

from pathlib import Path

from koradaemon.index import fts
from koradaemon.index.db import open_db
from koradaemon.index.jobs import DeleteJob
from koradaemon.index.prepare import ChunkParams, prepare_index
from koradaemon.index.retrieval import FileTexts
from koradaemon.index.store import AgencyStore
from koradaemon.index.writer import Applied, Writer

ROOT = "notes"
Env = tuple[Path, Writer, list[Applied]]


def index(tmp: Path, writer: Writer, *rels: str, bulk: bool = False) -> None:
    conn = open_db(tmp / "k.db")
    try:
        for rel in rels:
            known = AgencyStore(conn, "a").document(ROOT, rel)
            job = prepare_index("a", ROOT, rel, tmp / ROOT / rel, known, ChunkParams(), bulk=bulk)
            assert job is not None, rel
            writer.submit(job)
        writer.flush()
    finally:
        conn.close()


def matches(tmp: Path, word: str) -> int:
    """Rows of the agency's table matching ``word``, straight from FTS5."""
    conn = open_db(tmp / "k.db")
    try:
        name = fts.table("a")
        return int(conn.execute(f"SELECT count(*) FROM {name} WHERE {name} MATCH ?", (word,)).fetchone()[0])
    finally:
        conn.close()


def check_fts(tmp: Path) -> None:
    """FTS5's own integrity check, and one full-text row per chunk row."""
    conn = open_db(tmp / "k.db")
    try:
        name = fts.table("a")
        conn.execute(f"INSERT INTO {name}({name}) VALUES ('integrity-check')")
        (rows,) = conn.execute(f"SELECT count(*) FROM {name}").fetchone()
        (chunks,) = conn.execute("SELECT count(*) FROM chunks WHERE agency_id = 'a'").fetchone()
        assert rows == chunks
        assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name LIKE 'fts%content'").fetchall()
        # a big segment is merged again once half of it is deleted, not a tenth (fts.DELETE_MERGE_PERCENT)
        assert conn.execute("""SELECT v FROM "fts_a_config" WHERE k = 'deletemerge'""").fetchall() == [(50,)]
    finally:
        conn.close()


def test_a_hit_whose_file_changed_or_vanished_is_kept_and_marked_stale(writer_env: Env) -> None:
    tmp, writer, _ = writer_env
    (tmp / ROOT / "f.md").write_text("intro line\nthe quince needle here\n")
    index(tmp, writer, "f.md")
    conn = open_db(tmp / "k.db")
    try:
        store = AgencyStore(conn, "a", FileTexts(tmp, (ROOT,)))
        (hit,) = store.search("quince")
        assert not hit.stale and "quince" in hit.snippet and (hit.line_start, hit.match_line) == (1, 2)
        (tmp / ROOT / "f.md").write_text("intro line\nthe QUINCE needle here\n")  # same size, not reindexed
        (hit,) = store.search("quince")
        got = hit.to_dict()
        assert got["stale"] is True and got["snippet"] == "" and got["highlights"] == []
        assert (got["path"], got["line_start"], got["line_end"], got["match_line"]) == ("f.md", 1, 1, 1)
        (tmp / ROOT / "f.md").unlink()
        (hit,) = store.search("quince")
        assert hit.stale and hit.snippet == ""
        (tmp / "outside.md").write_text("intro line\nthe quince needle here\n")  # the indexed bytes, elsewhere
        (tmp / ROOT / "f.md").symlink_to(tmp / "outside.md")
        (hit,) = store.search("quince")
        assert hit.stale and hit.snippet == "", "a symlink is never followed, even to the same bytes"
    finally:
        conn.close()


def test_rewritten_and_removed_files_leave_no_stray_match(writer_env: Env) -> None:
    tmp, writer, _ = writer_env
    names = [f"r{i}.md" for i in range(12)]
    for n in names:
        (tmp / ROOT / n).write_text(f"kumquat {n} common\n" + "filler line\n" * (200 if n == "r0.md" else 1))
    index(tmp, writer, *names, bulk=True)
    assert matches(tmp, "kumquat") == 12
    for n in names[:6]:  # rewritten live, one transaction each
        (tmp / ROOT / n).write_text(f"persimmon {n} common\n")
    index(tmp, writer, *names[:6])
    for n in names[6:9]:  # rewritten in one bulk batch
        (tmp / ROOT / n).write_text(f"medlar {n} common\n")
    index(tmp, writer, *names[6:9], bulk=True)
    for n in names[9:]:  # removed
        (tmp / ROOT / n).unlink()
        writer.submit(DeleteJob("a", ROOT, n))
    writer.flush()
    assert matches(tmp, "kumquat") == 0 and matches(tmp, "filler") == 0
    assert (matches(tmp, "persimmon"), matches(tmp, "medlar"), matches(tmp, "common")) == (6, 3, 9)
    check_fts(tmp)
    conn = open_db(tmp / "k.db")
    try:
        hits = AgencyStore(conn, "a", FileTexts(tmp, (ROOT,))).search("common", 20)
        assert sorted(h.path for h in hits) == sorted(names[:9]) and not any(h.stale for h in hits)
    finally:
        conn.close()
