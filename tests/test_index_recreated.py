"""A delete whose file is already back (git checkout unlinks each file it updates, then writes it
anew) is indexed as a replacement, not deleted and indexed again; a real delete still deletes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from test_index_crawl_sizes import ROOT, documents

from koradaemon.index.pipeline import Indexer
from koradaemon.index.prepare import ChunkParams
from koradaemon.index.writer import Applied, Writer
from koradaemon.watch.changes import ChangeKind, FileChange
from koradaemon.watch.workqueue import WorkQueue


@pytest.fixture
def env(writer_env: tuple[Path, Writer, list[Applied]]) -> tuple[Path, Writer, list[Applied]]:
    return writer_env  # conftest: a started writer on tmp_path/k.db, the root folder "notes"


def test_a_delete_of_a_file_written_again_replaces_it_and_a_real_delete_deletes(
        env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, applied = env
    folder = tmp / ROOT
    (folder / "kept.md").write_text("branch one\n")
    (folder / "gone.md").write_text("only on branch one\n")
    work = WorkQueue()
    indexer = Indexer(db_path=tmp / "k.db", work=work, writer=writer, root_paths={("a", ROOT): folder},
                      params=ChunkParams(), workers=1)
    indexer.start()
    try:
        for rel in ("kept.md", "gone.md"):
            work.put(FileChange(ChangeKind.INDEX, "a", ROOT, rel))
        assert work.wait_idle(10)
        writer.flush()
        applied.clear()
        (folder / "kept.md").unlink()  # as git does: unlink, then create with the new content
        (folder / "kept.md").write_text("branch two\n")
        (folder / "gone.md").unlink()
        for rel in ("kept.md", "gone.md"):  # the deletes are taken after the file came back
            work.put(FileChange(ChangeKind.DELETE, "a", ROOT, rel))
        assert work.wait_idle(10)
        writer.flush()
        work.put(FileChange(ChangeKind.INDEX, "a", ROOT, "kept.md"))  # the create's own event: unchanged now
        assert work.wait_idle(10)
        writer.flush()
    finally:
        indexer.stop()
    docs = documents(tmp)
    assert docs["kept.md"] == (hashlib.sha256(b"branch two\n").hexdigest(), None, 1)
    assert "gone.md" not in docs
    assert sorted((a.type, a.data["path"]) for a in applied) == [("delete", "gone.md"), ("index", "kept.md")]
    assert indexer.counters["delete_recreated"] == 1
