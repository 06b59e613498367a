"""Small files read by the writer thread itself (ReadJob), inside its batches."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from koradaemon.index.chunking import ChunkParams
from koradaemon.index.db import open_db
from koradaemon.index.jobs import Applied, IndexJob, ReadJob
from koradaemon.index.prepare import EAGER_LIMIT
from koradaemon.index.retrieval import FileTexts
from koradaemon.index.store import AgencyStore
from koradaemon.index.writer import Writer

ROOT = "notes"


@pytest.fixture
def env(writer_env: tuple[Path, Writer, list[Applied]]) -> tuple[Path, Writer, list[Applied]]:
    return writer_env  # conftest: a started writer on tmp_path/k.db, the root folder "notes"


def read_job(tmp: Path, rel: str, *, unindexed: bool = False) -> ReadJob:
    return ReadJob("a", ROOT, rel, str(tmp / ROOT), ChunkParams(), bulk=True, unindexed=unindexed)


def documents(tmp: Path) -> dict[str, tuple[str, int]]:
    conn = open_db(tmp / "k.db")
    try:
        return {p: (sha, n) for p, sha, n in conn.execute(
            "SELECT d.path, d.sha256, (SELECT count(*) FROM chunks c WHERE c.document_id = d.id)"
            " FROM documents d WHERE d.agency_id = 'a'")}
    finally:
        conn.close()


def outbox_paths(tmp: Path) -> list[str]:
    conn = open_db(tmp / "k.db")
    try:
        return sorted(str(r[0]) for r in conn.execute("SELECT json_extract(data, '$.path') FROM audit_outbox"))
    finally:
        conn.close()


def test_a_big_file_in_a_batch_of_small_ones_streams_in_its_own_transaction(
        env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, applied = env
    names = [f"f{i}.txt" for i in range(30)]
    for i, name in enumerate(names):
        (tmp / ROOT / name).write_text(f"small file number {i}\n")
    big = b"lorem ipsum dolor sit amet\n" * (EAGER_LIMIT // 27 + 1000)
    (tmp / ROOT / "big.txt").write_bytes(big)
    jobs = [read_job(tmp, n, unindexed=True) for n in names[:15]] + [read_job(tmp, "big.txt")]
    jobs += [read_job(tmp, n, unindexed=True) for n in names[15:]]
    writer.submit_many(jobs)
    writer.flush()
    docs = documents(tmp)
    assert sorted(docs) == sorted([*names, "big.txt"])
    assert docs["big.txt"] == (hashlib.sha256(big).hexdigest(), docs["big.txt"][1]) and docs["big.txt"][1] > 80
    assert docs["f3.txt"] == (hashlib.sha256(b"small file number 3\n").hexdigest(), 1)
    # exactly one audit record per file, in the same transactions as the rows
    assert sorted(a.data["path"] for a in applied) == sorted([*names, "big.txt"])
    assert outbox_paths(tmp) == sorted([*names, "big.txt"])


def test_a_row_that_appeared_after_the_crawl_is_replaced_not_doubled(env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, applied = env
    path = tmp / ROOT / "x.md"
    path.write_text("first version\n")
    writer.submit(read_job(tmp, "x.md"))
    writer.flush()
    path.write_text("second version, longer\n")
    writer.submit(read_job(tmp, "x.md", unindexed=True))  # the crawl's mark is stale: a row exists
    writer.flush()
    assert documents(tmp) == {"x.md": (hashlib.sha256(b"second version, longer\n").hexdigest(), 1)}
    assert [a.type for a in applied] == ["index", "index"]


def test_unchanged_and_vanished_files(env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, applied = env
    (tmp / ROOT / "keep.md").write_text("same content\n")
    (tmp / ROOT / "gone.md").write_text("soon deleted\n")
    writer.submit_many([read_job(tmp, "keep.md"), read_job(tmp, "gone.md")])
    writer.flush()
    (tmp / ROOT / "gone.md").unlink()
    writer.submit_many([read_job(tmp, "keep.md"), read_job(tmp, "gone.md")])
    writer.flush()
    assert sorted(documents(tmp)) == ["keep.md"]
    assert [(a.type, a.data["path"]) for a in applied] == [
        ("index", "keep.md"), ("index", "gone.md"), ("delete", "gone.md")]
    assert writer.counters["unchanged"] == 1


def test_rewrites_in_one_batch_leave_no_old_text(env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, applied = env
    names = [f"r{i}.txt" for i in range(40)]
    for name in names:
        (tmp / ROOT / name).write_text(f"oldword {name}\n")
    writer.submit_many([read_job(tmp, n, unindexed=True) for n in names])
    writer.flush()
    for name in names:
        (tmp / ROOT / name).write_text(f"newword {name} more text\n")
    twice = IndexJob("a", ROOT, "r0.txt", str(tmp / ROOT / "r0.txt"), 5, 0, "1" * 64,
                     [(0, 5, "1" * 64, "interim", 1, "")], bulk=True)
    writer.submit_many([twice] + [read_job(tmp, n) for n in names])  # r0 is replaced twice in one batch
    writer.flush()
    conn = open_db(tmp / "k.db")
    try:
        store = AgencyStore(conn, "a", FileTexts(tmp, (ROOT,)))
        assert store.search("oldword") == [] and store.search("interim") == []
        assert sorted(h.path for h in store.search("newword", limit=100)) == sorted(names)
        (fts_rows,) = conn.execute('SELECT count(*) FROM "fts_a"').fetchone()
        assert fts_rows == store.stats()["chunks"] == len(names)
        conn.execute("""INSERT INTO "fts_a"("fts_a") VALUES ('integrity-check')""")
    finally:
        conn.close()
    assert len([a for a in applied if a.type == "index"]) == 2 * len(names) + 1
