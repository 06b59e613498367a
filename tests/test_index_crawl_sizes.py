"""Crawl changes carry the size the crawl saw; the indexer trusts it only to pick the thread that reads."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from koradaemon.index.db import open_db
from koradaemon.index.pipeline import INLINE_BYTES, Indexer
from koradaemon.index.prepare import ChunkParams
from koradaemon.index.writer import Applied, Writer
from koradaemon.watch.changes import ChangeKind, FileChange
from koradaemon.watch.workqueue import WorkQueue

ROOT = "notes"


@pytest.fixture
def env(writer_env: tuple[Path, Writer, list[Applied]]) -> tuple[Path, Writer, list[Applied]]:
    return writer_env  # conftest: a started writer on tmp_path/k.db, the root folder "notes"


def documents(tmp: Path) -> dict[str, tuple[str, str | None, int]]:
    conn = open_db(tmp / "k.db")
    try:
        return {p: (sha, skipped, n) for p, sha, skipped, n in conn.execute(
            "SELECT d.path, d.sha256, d.skipped, (SELECT count(*) FROM chunks c WHERE c.document_id = d.id)"
            " FROM documents d WHERE d.agency_id = 'a'")}
    finally:
        conn.close()


def test_files_that_changed_since_the_crawl_are_indexed_as_they_are_now(
        env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, applied = env
    folder = tmp / ROOT
    grew = b"grown well past the small-file size\n" * (INLINE_BYTES // 20)
    shrank = b"now small\n"
    (folder / "grew.md").write_bytes(grew)  # the crawl saw 10 bytes: read by the writer, still all of it
    (folder / "shrank.md").write_bytes(shrank)  # the crawl saw a big file: read by the worker
    (folder / "target.md").write_text("the link's target\n")
    os.symlink("target.md", folder / "link.md")  # a symlink now where the crawl saw a small file
    crawl = [("grew.md", 10), ("shrank.md", INLINE_BYTES * 4), ("link.md", 9), ("gone.md", 12)]
    work = WorkQueue()
    indexer = Indexer(db_path=tmp / "k.db", work=work, writer=writer, root_paths={("a", ROOT): folder},
                      params=ChunkParams(), workers=1)
    indexer.start()
    try:
        for rel, size in crawl:
            work.put(FileChange(ChangeKind.INDEX, "a", ROOT, rel, None, True, size, unindexed=True))
        assert work.wait_idle(10)
        writer.flush()
    finally:
        indexer.stop()
    docs = documents(tmp)
    assert docs["grew.md"][:2] == (hashlib.sha256(grew).hexdigest(), None) and docs["grew.md"][2] >= 1
    assert docs["shrank.md"] == (hashlib.sha256(shrank).hexdigest(), None, 1)
    assert docs["link.md"][1] == "symlink" and docs["link.md"][2] == 0
    assert "gone.md" not in docs  # nothing there, nothing indexed
    assert sorted(a.data["path"] for a in applied) == ["grew.md", "link.md", "shrank.md"]
