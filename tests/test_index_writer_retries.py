"""The writer meets a locked or full database: it holds the write and retries it (never skips it),
drops it only when stopping, and merges FTS segments when idle. Real APSW connections, a real tmpfs."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest
from conftest import wait_for
from diskutil import small_tmpfs

from koradaemon.index.db import open_db
from koradaemon.index.jobs import IndexJob
from koradaemon.index.prepare import EAGER_LIMIT, ChunkParams, LazyRows, prepare_index
from koradaemon.index.retrieval import FileTexts
from koradaemon.index.store import AgencyStore
from koradaemon.index.writer import Applied, Writer
from koradaemon.watch.changes import ChangeKind
from koradaemon.watch.ignore import IgnoreRules
from koradaemon.watch.reconcile import reconcile

ROOT = "notes"


def job_for(folder: Path, rel: str, *, bulk: bool = False) -> IndexJob:
    job = prepare_index("a", ROOT, rel, folder / ROOT / rel, None, ChunkParams(), bulk=bulk)
    assert isinstance(job, IndexJob)
    return job


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return [tuple(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def documents(db: Path) -> dict[str, str | None]:
    """path -> skip reason (None: indexed) of agency a."""
    return {str(p): (str(s) if s is not None else None)
            for p, s in query(db, "SELECT path, skipped FROM documents WHERE agency_id = 'a'")}


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / ROOT).mkdir()
    open_db(tmp_path / "k.db").close()
    yield tmp_path


def test_a_write_held_up_by_another_connections_lock_is_retried_until_it_goes_through(folder: Path) -> None:
    db = folder / "k.db"
    for i in range(6):
        (folder / ROOT / f"f{i}.md").write_text(f"file {i} about parsnips\n")
    applied: list[Applied] = []
    writer = Writer(db, on_committed=applied.extend, busy_timeout_ms=30)
    writer.start()
    writer.flush()  # its connection is open (opening takes the write lock for a moment)
    blocker = apsw.Connection(str(db))
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        for i in range(5):  # a bulk batch (one transaction) ...
            writer.submit(job_for(folder, f"f{i}.md", bulk=True))
        writer.submit(job_for(folder, "f5.md"))  # ... and a live change behind it
        wait_for(lambda: writer.counters["busy_retries"] >= 3, 10, what="busy retries")
        assert writer.stalled is not None and writer.stalled.startswith("database busy"), writer.stalled
        assert writer.depth() == 6 and documents(db) == {}, "held: neither written nor skipped"
        blocker.execute("ROLLBACK")  # the lock is released
        writer.flush()
    finally:
        blocker.close()
        writer.stop()
    assert writer.stalled is None
    assert documents(db) == {f"f{i}.md": None for i in range(6)}, "every change indexed, none skipped"
    assert sorted(str(a.data["path"]) for a in applied) == [f"f{i}.md" for i in range(6)]
    assert [a.type for a in applied] == ["index"] * 6
    assert query(db, "SELECT count(*) FROM audit_outbox") == [(6,)], "one audit record each, committed with it"
    assert writer.counters["job_errors"] == 0 and writer.counters["batch_replays"] == 1


def test_a_held_write_is_dropped_when_stopping_not_skipped(folder: Path) -> None:
    db = folder / "k.db"
    (folder / ROOT / "a.md").write_text("never committed\n")
    writer = Writer(db, busy_timeout_ms=30)
    writer.start()
    writer.flush()  # its connection is open (opening takes the write lock for a moment)
    blocker = apsw.Connection(str(db))
    try:
        blocker.execute("BEGIN IMMEDIATE")
        writer.submit(job_for(folder, "a.md"))
        wait_for(lambda: writer.stalled, 10, what="the write held")
        stopper = threading.Thread(target=writer.stop, args=(20.0,))
        stopper.start()
        stopper.join(5)
        assert not stopper.is_alive() and not writer.alive(), "a held write does not keep the writer from stopping"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert writer.counters["dropped_at_stop"] == 1
    assert documents(db) == {} and query(db, "SELECT count(*) FROM audit_outbox") == [(0,)], \
        "nothing recorded: the next start's reconcile finds the file new"


def test_the_idle_writer_merges_the_fts_segments_of_single_file_commits(folder: Path) -> None:
    db = folder / "k.db"
    writer = Writer(db, optimize_idle_s=0.2)
    writer.start()
    try:
        for i in range(30):  # live changes: one transaction, so one FTS segment, each
            (folder / ROOT / f"n{i}.md").write_text(f"note {i} on turnips and word{i}\n")
            writer.submit(job_for(folder, f"n{i}.md"))
            writer.flush()
        assert writer.counters["optimizations"] == 0, "never on the hot path"
        before = query(db, "SELECT count(*) FROM fts_a_data")[0][0]
        wait_for(lambda: writer.counters["optimizations"] >= 1, 15, 0.05, "the idle optimize")
        after = query(db, "SELECT count(*) FROM fts_a_data")[0][0]
    finally:
        writer.stop()
    assert isinstance(before, int) and isinstance(after, int) and after < before, (before, after)
    conn = open_db(db)
    try:
        hits = AgencyStore(conn, "a", FileTexts(folder, (ROOT,))).search("turnips", limit=50)
    finally:
        conn.close()
    assert len(hits) == 30, "merging lost nothing"


def test_a_big_files_chunk_stream_starts_over_at_each_iteration(tmp_path: Path) -> None:
    (tmp_path / ROOT).mkdir()
    with open(tmp_path / ROOT / "big.txt", "w") as fh:
        fh.write("needle at the start\n" + "filler words here\n" * (EAGER_LIMIT // 18 + 10))
    job = job_for(tmp_path, "big.txt")
    assert isinstance(job.chunks, LazyRows), "a file this big is streamed"
    first, second = list(job.chunks), list(job.chunks)
    assert first and first == second and first[0][0] == 0, "a retried transaction inserts every chunk again"


def test_a_full_database_holds_a_streamed_file_and_indexes_all_of_it_when_space_returns(tmp_path: Path) -> None:
    """The disk fills up while a big file streams into its transaction: the retry after space
    returns starts the stream over, so the chunks read before the failure are not lost."""
    src = tmp_path / ROOT
    src.mkdir()
    with open(src / "big.txt", "w") as fh:
        # numbered lines: the index (not the text: the tables keep none) needs more than the 2 MB left
        fh.write("alpha needle first line\n" + "".join(f"filler words {i}\n" for i in range(EAGER_LIMIT // 18 + 10))
                 + "omega needle\n")
    with small_tmpfs(tmp_path / "disk", "12m") as disk:
        db = disk / "k.db"
        open_db(db).close()
        vfs = os.statvfs(disk)
        filler = disk / "filler.bin"
        filler.write_bytes(b"\0" * (vfs.f_bavail * vfs.f_frsize - (2 << 20)))  # 2 MB left: the file needs 4+
        writer = Writer(db)
        writer.start()
        try:
            writer.submit(job_for(tmp_path, "big.txt"))
            wait_for(lambda: writer.stalled, 20, 0.02, "the write held for lack of space")
            assert writer.stalled is not None and writer.stalled.startswith("disk full"), writer.stalled
            assert writer.counters["io_retries"] >= 1
            filler.unlink()
            writer.flush(60)
        finally:
            writer.stop()
        assert writer.stalled is None and documents(db) == {"big.txt": None}
        seqs = [r[0] for r in query(db, "SELECT seq FROM chunks ORDER BY seq")]
        expected = len(list(LazyRows(src / "big.txt", "big.txt", *_size_mtime(src / "big.txt"), ChunkParams())))
        assert seqs == list(range(expected)), "every chunk, from the first"
        conn = open_db(db)
        try:
            store = AgencyStore(conn, "a", FileTexts(tmp_path, (ROOT,)))
            assert [h.path for h in store.search("alpha needle")] == ["big.txt"]
            assert [h.path for h in store.search("omega needle")] == ["big.txt"]
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            conn.close()


def _size_mtime(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def test_reconcile_offers_again_a_file_an_earlier_version_skipped_for_a_full_disk(folder: Path) -> None:
    root = folder / ROOT
    for name in ("full.md", "binary.md"):
        (root / name).write_text(name)
    conn = open_db(folder / "k.db")
    try:
        store = AgencyStore(conn, "a")
        with conn:
            for name, reason in (("full.md", "error:FullError"), ("binary.md", "binary")):
                st = (root / name).stat()
                store.put_document(ROOT, name, st.st_size, st.st_mtime_ns, "", (), reason)
        known = store.known_files(ROOT)
    finally:
        conn.close()
    changes = list(reconcile("a", ROOT, root, IgnoreRules.for_root(root), known))
    assert [(c.kind, c.path) for c in changes] == [(ChangeKind.INDEX, "full.md")], \
        "a skip for the database's trouble is retried; one for the file's own reason is not"
