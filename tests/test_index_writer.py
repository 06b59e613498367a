"""The writer, store and file preparation against a real APSW database file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from koradaemon.errors import QueryError
from koradaemon.index.db import integrity_ok, open_db
from koradaemon.index.jobs import DeleteJob, MoveJob
from koradaemon.index.prepare import ChunkParams, prepare_index
from koradaemon.index.retrieval import ChunkRef, FileTexts, StaleChunk, open_chunk
from koradaemon.index.store import AgencyStore
from koradaemon.index.writer import Applied, Writer

ROOT = "notes"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Path, Writer, list[Applied]]]:
    db = tmp_path / "k.db"
    open_db(db).close()
    applied: list[Applied] = []
    writer = Writer(db, on_committed=applied.extend, batch_files=50)
    writer.start()
    (tmp_path / ROOT).mkdir()
    yield tmp_path, writer, applied
    writer.stop()


def index(tmp: Path, writer: Writer, rel: str, agency: str = "a", params: ChunkParams | None = None) -> None:
    conn = open_db(tmp / "k.db")
    known = AgencyStore(conn, agency).document(ROOT, rel)
    job = prepare_index(agency, ROOT, rel, tmp / ROOT / rel, known, params or ChunkParams(), bulk=False)
    if job is not None:
        writer.submit(job)
    writer.flush()
    conn.close()


def store(tmp: Path, agency: str = "a") -> AgencyStore:
    return AgencyStore(open_db(tmp / "k.db"), agency, FileTexts(tmp, (ROOT,)))


def test_index_search_and_reference_round_trip(env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, applied = env
    (tmp / ROOT / "a.md").write_text("the quick brown fox\n\njumps over the lazy dog\n")
    index(tmp, writer, "a.md")
    hits = store(tmp).search("fox")
    assert [h.path for h in hits] == ["a.md"]
    start, end = hits[0].highlights[0]
    assert hits[0].snippet[start:end] == "fox" and (hits[0].line_start, hits[0].match_line) == (1, 1)
    assert applied[-1].type == "index" and applied[-1].data["chunks"] == 1
    ref = ChunkRef(ROOT, "a.md", hits[0].byte_offset, hits[0].byte_length, hits[0].sha256)
    with open_chunk(tmp, (ROOT,), ref) as view:
        assert bytes(view).startswith(b"the quick")
    (tmp / ROOT / "a.md").write_text("the quick brown cat\n\njumps over the lazy dog\n")
    with pytest.raises(StaleChunk), open_chunk(tmp, (ROOT,), ref):
        pass


def test_unchanged_file_is_not_rewritten(env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, applied = env
    f = tmp / ROOT / "same.txt"
    f.write_text("stable content\n")
    index(tmp, writer, "same.txt")
    n = len(applied)
    os.utime(f, ns=(1_000_000_000, 1_000_000_000))  # touch: same bytes, new mtime
    index(tmp, writer, "same.txt")
    assert len(applied) == n, "same sha256: no new index record"
    assert store(tmp).document(ROOT, "same.txt").mtime_ns == 1_000_000_000  # type: ignore[union-attr]


def test_two_jobs_for_one_write_index_and_audit_it_once(env: tuple[Path, Writer, list[Applied]]) -> None:
    """Both events of one write prepared before either commits (for a new file and for a rewrite):
    the second finds the row already holding that version and writes nothing."""
    tmp, writer, applied = env
    f = tmp / ROOT / "twice.md"
    for text in ("first version: quince\n", "second version: medlar\n"):
        f.write_text(text)
        conn = open_db(tmp / "k.db")
        known = AgencyStore(conn, "a").document(ROOT, "twice.md")
        jobs = [prepare_index("a", ROOT, "twice.md", f, known, ChunkParams(), bulk=False) for _ in range(2)]
        conn.close()
        for job in jobs:
            assert job is not None
            writer.submit(job)
        writer.flush()
    records = [a for a in applied if a.type == "index"]
    assert [r.data["sha256"] for r in records] == [
        _sha(b"first version: quince\n"),
        _sha(b"second version: medlar\n")]
    hits = store(tmp).search("medlar")
    assert [h.path for h in hits] == ["twice.md"] and store(tmp).search("quince") == []
    assert writer.counters["unchanged_late"] == 2


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"\x89PNG\r\n\x1a\n\x00\x00binary", "binary")],  # Latin-1 text is indexed: tests/test_search_text.py
)
def test_unusable_files_are_skipped_with_reason(
    env: tuple[Path, Writer, list[Applied]], content: bytes, reason: str
) -> None:
    tmp, writer, applied = env
    (tmp / ROOT / "bad").write_bytes(content)
    index(tmp, writer, "bad")
    doc = store(tmp).document(ROOT, "bad")
    assert doc is not None and doc.skipped == reason
    assert applied[-1].type == "skip"
    assert writer.counters[f"skipped_{reason}"] == 1


def test_too_large_and_empty(env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, _ = env
    (tmp / ROOT / "big.txt").write_text("x " * 5000)
    (tmp / ROOT / "empty.txt").write_text("")
    index(tmp, writer, "big.txt", params=ChunkParams(max_file_bytes=1000))
    index(tmp, writer, "empty.txt")
    s = store(tmp)
    assert s.document(ROOT, "big.txt").skipped == "too_large"  # type: ignore[union-attr]
    empty = s.document(ROOT, "empty.txt")
    assert empty is not None and empty.skipped is None and empty.size == 0


def test_huge_file_streams_in_chunks(env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, _ = env
    line = b"lorem ipsum dolor sit amet, consectetur adipiscing elit\n"
    with open(tmp / ROOT / "huge.txt", "wb") as fh:
        for i in range(12 * 1024 * 1024 // len(line)):
            fh.write(line if i != 100_000 else b"needle haystack\n")
    index(tmp, writer, "huge.txt")
    s = store(tmp)
    assert s.stats()["chunks"] > 240
    hits = s.search("needle")
    assert len(hits) >= 1 and hits[0].path == "huge.txt"


def test_cp1252_deep_in_a_huge_streamed_file_is_decoded(env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, _ = env
    with open(tmp / ROOT / "huge.txt", "wb") as fh:
        fh.write(b"ok text\n" * (600_000))
        fh.write(b"\x93quoted\x94 na\xefve\n")  # cp1252 curly quotes and i-diaeresis
    index(tmp, writer, "huge.txt")
    s = store(tmp)
    assert s.document(ROOT, "huge.txt").skipped is None  # type: ignore[union-attr]
    (hit,) = s.search("naive quoted")
    assert "\u201cquoted\u201d na\u00efve" in hit.snippet
    assert hit.match_line == 600_001 and hit.line_end == 600_001


def test_delete_move_and_tree_ops(env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, _ = env
    (tmp / ROOT / "d").mkdir()
    for name in ("x.txt", "y.txt"):
        (tmp / ROOT / "d" / name).write_text(f"content {name}\n")
        index(tmp, writer, f"d/{name}")
    writer.submit(MoveJob("a", ROOT, "d", "e", tree=True))
    writer.flush()
    s = store(tmp)
    assert sorted(s.known_files(ROOT)) == ["e/x.txt", "e/y.txt"]
    writer.submit(MoveJob("a", ROOT, "e/x.txt", "z.txt"))
    writer.submit(DeleteJob("a", ROOT, "e", tree=True))
    writer.flush()
    assert sorted(s.known_files(ROOT)) == ["z.txt"]
    assert [h.path for h in s.search("content")] == ["z.txt"]
    assert integrity_ok(s.conn)


def test_agencies_are_isolated(env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, _ = env
    (tmp / ROOT / "secret.txt").write_text("classified rutabaga\n")
    index(tmp, writer, "secret.txt", agency="alpha")
    assert store(tmp, "alpha").search("rutabaga")
    assert store(tmp, "beta").search("rutabaga") == []
    assert store(tmp, "beta").document(ROOT, "secret.txt") is None


def test_fts_syntax_error_is_a_query_error(env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, _ = env
    (tmp / ROOT / "u.md").write_text("an unbalanced quote\n")
    index(tmp, writer, "u.md")
    assert [h.path for h in store(tmp).search('"unbalanced')] == ["u.md"], "the quote is closed for the user"
    with pytest.raises(QueryError, match="bad FTS5 query"):
        store(tmp).search('"unbalanced', raw=True)
    with pytest.raises(QueryError, match="empty search query"):
        store(tmp).search("   ")


def test_vanished_file_is_not_an_error(env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, applied = env
    index(tmp, writer, "never-there.txt")
    assert applied == [] and writer.counters["job_errors"] == 0
