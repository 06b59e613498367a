"""No single job stops the writer or an indexer thread: each bad item is skipped with its reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for

from koradaemon.index.db import open_db
from koradaemon.index.jobs import IndexJob
from koradaemon.index.pipeline import Indexer
from koradaemon.index.prepare import ChunkParams
from koradaemon.index.writer import Applied, Writer, WriterStopped
from koradaemon.watch.changes import ChangeKind, FileChange
from koradaemon.watch.workqueue import WorkQueue

ROOT = "notes"


@pytest.fixture
def env(writer_env: tuple[Path, Writer, list[Applied]]) -> tuple[Path, Writer, list[Applied]]:
    return writer_env  # conftest: a started writer on tmp_path/k.db, the root folder "notes"


def good_job(tmp: Path, name: str, text: str, bulk: bool = False) -> IndexJob:
    path = tmp / ROOT / name
    path.write_text(text)
    st = path.stat()
    data = text.encode()
    return IndexJob("a", ROOT, name, path, st.st_size, st.st_mtime_ns, "0" * 64,
                    [(0, len(data), "0" * 64, text, 1, "")], bulk=bulk, nbytes=len(data))


def bad_stream() -> Iterator[tuple[int, int, str, str, int, str]]:
    yield (0, 1, "0" * 64, "x", 1, "")
    raise RuntimeError("a chunk stream that breaks half way")


def skipped(tmp: Path) -> dict[str, str | None]:
    conn = open_db(tmp / "k.db")
    try:
        return {p: s for p, s in conn.execute("SELECT path, skipped FROM documents")}
    finally:
        conn.close()


def test_writer_survives_jobs_that_raise(env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, applied = env
    broken = good_job(tmp, "broken.md", "x")
    broken.chunks = bad_stream()  # streamed: fails inside its own transaction
    malformed = good_job(tmp, "malformed.md", "y")
    malformed.chunks = [(0, 1)]  # type: ignore[list-item]  # a row of the wrong shape: ValueError
    writer.submit(broken)
    writer.submit(malformed)
    writer.submit(good_job(tmp, "after.md", "still indexed"))
    writer.flush()
    assert writer.alive()
    assert skipped(tmp) == {"broken.md": "error:RuntimeError", "malformed.md": "error:ValueError", "after.md": None}
    assert [(a.type, a.data["path"]) for a in applied] == [
        ("skip", "broken.md"), ("skip", "malformed.md"), ("index", "after.md")]
    assert writer.counters["job_errors"] == 2


def test_one_bad_job_in_a_bulk_batch_costs_only_itself(env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, applied = env
    jobs = [good_job(tmp, f"f{i}.md", f"file {i}", bulk=True) for i in range(20)]
    jobs[7].chunks = [(0, 1)]  # type: ignore[list-item]
    for job in jobs:
        writer.submit(job)
    writer.flush()
    assert writer.alive()
    state = skipped(tmp)
    assert state.pop("f7.md") == "error:ValueError"
    assert state == {f"f{i}.md": None for i in range(20) if i != 7}
    assert writer.counters["batch_replays"] >= 1
    assert sorted(a.data["path"] for a in applied if a.type == "index") == sorted(state)


def test_indexer_threads_survive_bad_changes(env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, applied = env
    work = WorkQueue()
    indexer = Indexer(db_path=tmp / "k.db", work=work, writer=writer, root_paths={("a", ROOT): tmp / ROOT},
                      params=ChunkParams(), workers=2)
    indexer.start()
    try:
        assert wait_for(indexer.alive, 5, what="indexer threads running")
        work.put(FileChange(ChangeKind.INDEX, "a", ROOT, "nul\0name.md"))  # open() raises ValueError
        work.put(FileChange(ChangeKind.INDEX, "a", "no-such-root", "x.md"))
        (tmp / ROOT / "ok.md").write_text("an ordinary file\n")
        work.put(FileChange(ChangeKind.INDEX, "a", ROOT, "ok.md"))
        assert work.wait_idle(10)
        writer.flush()
        assert indexer.alive(), "a bad change does not end a worker"
        assert indexer.counters["errors"] == 1
        assert [a.data["path"] for a in applied] == ["ok.md"]
    finally:
        indexer.stop()
    assert not indexer.alive()


def test_a_dead_writer_is_reported_and_never_blocks_its_producers(tmp_path: Path) -> None:
    writer = Writer(tmp_path / "missing-dir" / "k.db", queue_max=2)  # the thread cannot open its database
    writer.start()
    wait_for(lambda: not writer.alive(), 5, what="writer thread ended")
    job = good_job_at(tmp_path)
    with pytest.raises(WriterStopped):
        for _ in range(10):  # the queue fills up; the next submit fails instead of waiting forever
            writer.submit(job)


def good_job_at(tmp: Path) -> IndexJob:
    (tmp / ROOT).mkdir(exist_ok=True)
    return good_job(tmp, "x.md", "x")
