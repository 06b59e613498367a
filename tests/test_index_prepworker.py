"""The prep worker process: bulk files read, hashed, chunked and derived off the daemon's GIL.

Its rows must be exactly those prepared in a thread; a worker that dies, hangs or gets bad input
costs nothing but its speed (the daemon prepares the files itself); it never outlives its indexer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
from conftest import wait_for

from koradaemon.index.chunking import ChunkParams
from koradaemon.index.db import open_db
from koradaemon.index.handoff import IN_FLIGHT, Handoff, Item
from koradaemon.index.jobs import Applied, IndexJob
from koradaemon.index.pipeline import Indexer
from koradaemon.index.prepare import prepare_index
from koradaemon.index.prepclient import _CHILD_CODE, _PACKAGE_PARENT, PrepWorker, child_rss
from koradaemon.index.prepworker import HEADER
from koradaemon.index.rows import DocRow
from koradaemon.index.store import AgencyStore
from koradaemon.index.writer import Writer

ROOT = "notes"
SMALL = ChunkParams(chunk_bytes=400, overlap_percent=10)
INDEX = SimpleNamespace(name="INDEX")


class ListQueue:
    """A work queue of prepared changes, as the crawl hands them over (bulk, size known)."""

    def __init__(self, items: list[object]) -> None:
        self.items = list(items)
        self.pending = len(items)
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.gate = threading.Event()  # nothing is handed out before it is set
        self.gate.set()

    def get(self, timeout: float | None = None) -> object | None:
        with self.lock:
            if self.items and self.gate.is_set():
                return self.items.pop(0)
        time.sleep(min(timeout or 0.0, 0.01))
        return None

    def depth(self) -> int:
        return len(self.items)

    def task_done(self) -> None:
        with self.lock:
            self.pending -= 1
            if self.pending <= 0:
                self.done.set()


def corpus(folder: Path) -> dict[str, bytes]:
    """Files of every kind preparing tells apart."""
    files = {
        "prose.txt": b"plain words in a small note\n",
        "code.py": b"class HTTPServer:\n    def getUserName(self): return x11 + C++ and C#\n" * 30,
        "latin.txt": "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e\n".encode("cp1252") * 50,
        "utf16.txt": "\ufeffutf sixteen words getUserName\n".encode("utf-16-le") * 40,
        "cjk.md": "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0 \U0001f600 emoji\n".encode() * 40,
        "bin.dat": b"\x00\x01\x02binary" * 100,
        "empty.txt": b"",
        "sub/deep/n\u00e4me.txt": b"nested file with a name beyond ASCII\n",
    }
    files.update({f"many/f{i}.txt": f"note number {i} aboutThings v{i}\n".encode() * (1 + i % 7) for i in range(150)})
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return files


def job_fields(job: object) -> tuple[Any, ...]:
    """A job's fields; the derived tokens as a sorted list: derive() gives distinct words' tokens in
    set order, which follows the process's hash seed (each daemon run, each process its own)."""
    if isinstance(job, IndexJob):
        rows = [(*c[:5], sorted(c[5].split())) for c in job.chunks]
        return ("I", job.path, job.size, job.mtime_ns, job.sha256, rows, job.skipped, job.nbytes, job.fresh)
    return (type(job).__name__, *(getattr(job, k, None) for k in ("path", "size", "mtime_ns")))


def items(folder: Path, rels: list[str], known: dict[str, DocRow] | None = None) -> list[Item]:
    return [Item("a", ROOT, rel, str(folder), (known or {}).get(rel), SMALL, True, 0.0, True) for rel in rels]


def resolved(handoff: Handoff) -> list[object]:
    """What the handoff gives the writer, taken back from its held list (no writer needed)."""
    out: list[object] = []
    for held in handoff._held:
        out.extend(handoff._resolve(held) if hasattr(held, "items") else [held])  # type: ignore[arg-type]
    handoff._held.clear()
    return out


class NoWriter:
    """A writer with a long queue: the handoff never gives it files to prepare."""

    def queued(self) -> int:
        return 1 << 30


@pytest.fixture
def handoff() -> Any:
    stop = threading.Event()
    h = Handoff(NoWriter(), Counter(), stop, lambda: 1, prep=True)  # type: ignore[arg-type]
    yield h
    h.close(5.0)
    assert h.prep is not None and h.prep.pid is None


def test_jobs_from_the_worker_equal_jobs_prepared_in_a_thread(tmp_path: Path, handoff: Handoff) -> None:
    folder = tmp_path / ROOT
    files = corpus(folder)
    rels = sorted(files)
    st = (folder / "prose.txt").stat()
    known = {
        "prose.txt": DocRow(1, ROOT, "prose.txt", st.st_size, st.st_mtime_ns, "0" * 64, None),  # changed: index
        "code.py": DocRow(2, ROOT, "code.py", 1, 1, "", None),
    }
    gone = DocRow(3, ROOT, "gone.txt", 5, 5, "x", None)
    known["gone.txt"] = gone
    rels.append("gone.txt")
    for it in items(folder, rels, known):
        assert handoff.offload(it, 100)
    handoff._send()
    got = resolved(handoff)
    expected = [prepare_index("a", ROOT, rel, os.path.join(folder, rel), known.get(rel), SMALL, True,
                              root_path=str(folder)) for rel in rels]
    assert [job_fields(j) for j in got] == [job_fields(j) for j in expected if j is not None]
    assert handoff.counters["prepared_by_worker"] == len(rels)
    assert handoff.counters["prepared_here"] == 0
    kinds = Counter(type(j).__name__ for j in got)
    assert kinds == Counter({"IndexJob": len(files), "DeleteJob": 1})
    assert any(isinstance(j, IndexJob) and j.skipped == "binary" for j in got)
    assert max(len(list(j.chunks)) for j in got if isinstance(j, IndexJob)) > 3  # SMALL cut code.py in chunks


def test_an_unchanged_file_gives_nothing_and_a_touched_one_a_touch(tmp_path: Path, handoff: Handoff) -> None:
    folder = tmp_path / ROOT
    corpus(folder)
    first = prepare_index("a", ROOT, "prose.txt", folder / "prose.txt", None, SMALL, True, root_path=str(folder))
    assert isinstance(first, IndexJob)
    same = DocRow(1, ROOT, "prose.txt", first.size, first.mtime_ns, first.sha256, None)
    moved = DocRow(1, ROOT, "prose.txt", first.size, first.mtime_ns - 5, first.sha256, None)
    for it in items(folder, ["prose.txt"], {"prose.txt": same}) + items(folder, ["prose.txt"], {"prose.txt": moved}):
        handoff.offload(it, 10)
    handoff._send()
    got = resolved(handoff)
    assert [type(j).__name__ for j in got] == ["TouchJob"]
    assert handoff.counters["unchanged"] == 1


def test_bad_input_in_the_worker_is_prepared_here_with_the_same_outcome(tmp_path: Path, handoff: Handoff) -> None:
    folder = tmp_path / ROOT
    corpus(folder)
    bad = items(folder, ["prose.txt", "nul\x00name.txt", "code.py"])
    for it in bad:
        handoff.offload(it, 10)
    handoff._send()
    got = resolved(handoff)
    # The NUL name fails in the worker (ValueError), then here: counted, and nothing to record on disk.
    assert [j.path for j in got] == ["prose.txt", "code.py"]  # type: ignore[union-attr]
    assert handoff.counters["errors"] == 1
    assert handoff.counters["prepared_here"] == 1
    assert handoff.prep is not None and handoff.counters["prep_worker_crashes"] == 0
    # A root given relative is never sent (the worker runs in "/"): the caller prepares the file.
    assert not handoff.offload(Item("a", ROOT, "prose.txt", "notes", None, SMALL, True, 0.0, True), 10)
    # A request of the wrong shape is answered per item, the worker goes on.
    gen = handoff.prep.send([("x",), (1, 2, 3, 4, 5, 6, 7)])
    assert gen is not None and handoff.prep.receive(gen, 2) == [("R", "error:ValueError"), ("R", "bad_item")]


def test_a_broken_frame_ends_the_worker_with_one_line_and_status_65(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-P", "-c", _CHILD_CODE, _PACKAGE_PARENT],
                          input=HEADER.pack(3) + b"\xff\xfe\xfd", capture_output=True, timeout=30)
    assert proc.returncode == 65
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("koradaemon prep worker: bad request")
    assert proc.stdout == b""


def test_a_worker_killed_mid_batch_is_counted_and_its_files_prepared_here(tmp_path: Path, handoff: Handoff) -> None:
    folder = tmp_path / ROOT
    files = corpus(folder)
    rels = sorted(files)
    half = len(rels) // 2
    for it in items(folder, rels[:half]):
        handoff.offload(it, 10)
    handoff._send()
    assert handoff.prep is not None
    pid = handoff.prep.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    for it in items(folder, rels[half:]):  # sent to the dead worker (or refused): prepared here too
        handoff.offload(it, 10)
    handoff._send()
    got = resolved(handoff)
    expected = [prepare_index("a", ROOT, rel, os.path.join(folder, rel), None, SMALL, True, root_path=str(folder))
                for rel in rels]
    assert [job_fields(j) for j in got] == [job_fields(j) for j in expected]
    assert handoff.counters["prep_worker_crashes"] == 1
    assert handoff.counters["prepared_here"] >= half
    assert not psutil.pid_exists(pid)  # killed and waited for
    # The next bulk work starts a new worker.
    for it in items(folder, rels[:3]):
        handoff.offload(it, 10)
    handoff._send()
    assert len(resolved(handoff)) == 3
    assert handoff.counters["prep_worker_starts"] == 2
    assert handoff.prep.pid not in (None, pid)


def run_indexer(tmp_path: Path, name: str, prep: bool, rels: list[str], *,
                gated: bool = False) -> tuple[Indexer, ListQueue, Writer, Path]:
    db = tmp_path / f"{name}.db"
    open_db(db).close()
    writer = Writer(db)
    folder = tmp_path / ROOT
    changes = [SimpleNamespace(kind=INDEX, agency_id="a", root=ROOT, path=rel, bulk=True, unindexed=True,
                               size=(folder / rel).stat().st_size) for rel in rels]
    work = ListQueue(changes)  # type: ignore[arg-type]
    if gated:
        work.gate.clear()
    indexer = Indexer(db_path=db, work=work, writer=writer, root_paths={("a", ROOT): folder}, params=SMALL,
                      workers=1, prep_process=prep)
    writer.start()
    indexer.start()
    return indexer, work, writer, db


def snapshot(db: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], dict[str, list[str]]]:
    conn = open_db(db)
    try:
        docs = sorted(tuple(r) for r in conn.execute(
            "SELECT path, size, mtime_ns, sha256, skipped FROM documents"))
        chunks = sorted(tuple(r) for r in conn.execute(
            "SELECT d.path, c.seq, c.byte_offset, c.byte_length, c.sha256, c.line FROM chunks c"
            " JOIN documents d ON d.id = c.document_id"))
        store = AgencyStore(conn, "a")
        hits: dict[str, list[str]] = {}
        for q in ("user", "cplusplus", "csharp", "http", "\u65e5\u672c", "aboutthings", "caf\u00e9", "x11", "v7"):
            hits[q] = sorted(f"{p}:{s}" for p, s in conn.execute(
                "SELECT d.path, c.seq FROM fts_a f JOIN chunks c ON c.id = f.rowid JOIN documents d"
                " ON d.id = c.document_id WHERE fts_a MATCH ?", (f'"{q}"',)))
        assert store.stats()["files"] == len(docs)
        return docs, chunks, hits
    finally:
        conn.close()


def test_the_index_built_with_the_worker_is_the_index_built_without(tmp_path: Path) -> None:
    files = corpus(tmp_path / ROOT)
    rels = sorted(files)
    results = []
    for name, prep in (("threads", False), ("worker", True)):
        indexer, work, writer, db = run_indexer(tmp_path, name, prep, rels)
        assert work.done.wait(30)
        writer.flush()
        counters = Counter(indexer.counters)
        indexer.stop(5.0)
        writer.stop()
        results.append(snapshot(db))
        if prep:
            assert counters["prepared_by_worker"] + counters["prep_shared"] == len(rels) - 1  # not the empty file
            assert counters["prep_worker_crashes"] == 0
    assert results[0] == results[1]
    docs, chunks, hits = results[1]
    assert len(docs) == len(rels) and len(chunks) > len(rels)
    assert hits["cplusplus"] and hits["user"] and hits["\u65e5\u672c"] and hits["aboutthings"]


def test_stop_while_the_worker_is_busy_ends_it_within_the_deadline(tmp_path: Path) -> None:
    files = corpus(tmp_path / ROOT)
    indexer, work, writer, _ = run_indexer(tmp_path, "stop", True, sorted(files) * 3, gated=True)
    prep = indexer._handoff.prep
    assert prep is not None
    pid = wait_for(lambda: prep.pid, what="the prep worker to start")  # started with the indexer thread
    os.kill(pid, signal.SIGSTOP)  # it hangs (as on a stuck disk): the indexer waits for its answer
    work.gate.set()
    wait_for(lambda: prep._owed > IN_FLIGHT - 1, what="the indexer to wait on the worker")
    try:
        t0 = time.monotonic()
        indexer.stop(3.0)
        took = time.monotonic() - t0
    finally:
        if psutil.pid_exists(pid):
            os.kill(pid, signal.SIGCONT)
    writer.stop()
    assert took < 3.0
    assert not indexer.alive()
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
             what="the prep worker to end")
    assert prep.pid is None
    assert indexer.counters["prep_stopped_busy"] + indexer.counters["prep_worker_crashes"] >= 1


def open_fds() -> int:
    """Pipes this process holds open (the worker's stdin and stdout are two)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:")
    return n


def test_no_process_or_descriptor_outlives_the_worker(tmp_path: Path) -> None:
    folder = tmp_path / ROOT
    corpus(folder)
    me = psutil.Process()
    before_fds, before_kids = open_fds(), {c.pid for c in me.children()}
    for _ in range(2):  # started, used, stopped when idle, started again
        stop = threading.Event()
        counters: Counter[str] = Counter()
        prep = PrepWorker(counters, stop, idle_s=0.0)
        gen = prep.send([("/", "x", None, True, 100, 10, 1000)])
        assert gen is not None and child_rss(prep.pid) > 0
        assert open_fds() == before_fds + 2
        assert prep.receive(gen, 1) is not None
        prep.tick()  # idle for idle_s: the process ends
        assert prep.pid is None
        assert counters["prep_worker_starts"] == 1
    assert open_fds() == before_fds
    assert {c.pid for c in me.children()} == before_kids


def test_the_worker_imports_no_sqlite_nor_logging(tmp_path: Path) -> None:
    code = _CHILD_CODE.replace("sys.exit(main())", "import marshal, sys; print(sorted(sys.modules))")
    out = subprocess.run([sys.executable, "-P", "-c", code, _PACKAGE_PARENT], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    for heavy in ("apsw", "structlog", "koradaemon.index.store", "sqlite3", "asyncio"):
        assert f"'{heavy}'" not in out


def test_writer_applies_worker_jobs_like_thread_jobs(writer_env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, applied = writer_env
    folder = tmp / ROOT
    corpus(folder)
    h = Handoff(writer, Counter(), threading.Event(), lambda: 0, prep=True)
    try:
        for it in items(folder, ["code.py", "prose.txt", "bin.dat"]):
            h.offload(it, 10)
        h.hand_over(force=False)  # nothing more queued: all of it goes to the writer
        writer.flush()
    finally:
        h.close(5.0)
    types = sorted((a.type, str(a.data["path"])) for a in applied)
    assert types == [("index", "code.py"), ("index", "prose.txt"), ("skip", "bin.dat")]


def test_the_work_queue_is_idle_only_once_every_prepared_file_is_with_the_writer(tmp_path: Path) -> None:
    from koradaemon.watch.changes import ChangeKind, FileChange
    from koradaemon.watch.workqueue import WorkQueue

    folder = tmp_path / ROOT
    files = corpus(folder)
    rels = sorted(rel for rel, data in files.items() if data)
    db = tmp_path / "idle.db"
    open_db(db).close()
    writer = Writer(db)
    work = WorkQueue()
    indexer = Indexer(db_path=db, work=work, writer=writer, root_paths={("a", ROOT): folder}, params=SMALL,
                      workers=1, prep_process=True)
    writer.start()
    indexer.start()
    try:
        for round_ in range(3):  # a trickle, then a flood, then a trickle: idle in between each time
            chosen = rels[round_::3]
            for rel in chosen:
                work.put(FileChange(ChangeKind.INDEX, "a", ROOT, rel, bulk=True, size=len(files[rel]),
                                    unindexed=round_ == 0))
            assert work.wait_idle(30)
            # Idle: every change's job is with the writer (or done), none left at the worker.
            assert writer.submitted >= sum(len(rels[r::3]) for r in range(round_ + 1))
        writer.flush()
        assert indexer.counters["prepared_by_worker"] > 0
    finally:
        indexer.stop(5.0)
        writer.stop()
    assert snapshot(db)[0] and len(snapshot(db)[0]) == len(rels)


def test_a_daemon_crawls_with_the_worker_and_leaves_no_process_behind(tmp_path: Path) -> None:
    from koradaemon.config import load_config
    from koradaemon.daemon.assembler import Daemon

    (tmp_path / "koradaemon.yaml").write_text(
        "version: 1\nshutdown_timeout_s: 10\nlog: {level: warning, format: json}\nindex: {workers: 1}\n"
        "vault: {enabled: false}\nagencies:\n  - {agency_id: alpha, roots: [alpha/notes]}\n")
    files = corpus(tmp_path / "alpha" / "notes")
    me = psutil.Process()
    kids_before = {c.pid for c in me.children()}
    daemon = Daemon(load_config(tmp_path / "koradaemon.yaml", data_root=tmp_path))
    try:
        daemon.start()
        counters = daemon.pipeline.indexer.counters
        wait_for(lambda: daemon.pipeline.writer.counters["indexed"] + daemon.pipeline.writer.counters[
            "skipped_binary"] >= len(files), timeout=60, what="the crawl to index every file")
        assert counters["prepared_by_worker"] > 0 and counters["prep_worker_crashes"] == 0
    finally:
        daemon.stop()
    assert {c.pid for c in me.children()} == kids_before


def test_a_daemon_killed_with_sigkill_leaves_no_worker_behind(tmp_path: Path) -> None:
    """kill -9 gives the daemon no chance to end its worker: the worker sees its input end and goes."""
    from conftest import BASE_CONFIG, DaemonProc

    config = BASE_CONFIG.format(extra="", vault="false").replace("workers: 2", "workers: 1")
    assert "workers: 1" in config  # the prep worker runs with one indexer thread
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "koradaemon.yaml").write_text(config)
    d = DaemonProc(tmp_path)
    corpus(tmp_path / "alpha" / "notes")
    d.start()
    try:
        assert d.proc is not None
        daemon = psutil.Process(d.proc.pid)
        workers = wait_for(lambda: [c for c in daemon.children() if "prepworker" in " ".join(c.cmdline())],
                           timeout=30, what="the daemon's prep worker process")
        os.kill(d.proc.pid, signal.SIGKILL)
        d.proc.wait(30)
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"prep worker outlived its daemon: {[p.pid for p in alive]}"
        assert len(gone) == len(workers) == 1
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(30)


def test_the_worker_never_reads_through_a_link_or_from_a_special_file(tmp_path: Path, handoff: Handoff) -> None:
    """Names the crawl saw as regular files, swapped before the worker opens them (a symlink to a
    file outside the root, a FIFO, a folder replaced by a link): nothing outside is read, nothing
    blocks, and the regular file after them is still prepared by the worker."""
    folder = tmp_path / ROOT
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside the root: basilisk\n")
    folder.mkdir()
    (folder / "link.txt").symlink_to(outside / "secret.txt")
    os.mkfifo(folder / "pipe.txt")
    (folder / "dir").symlink_to(outside, target_is_directory=True)
    (folder / "plain.txt").write_text("a plain note: ammonite\n")
    rels = ["link.txt", "pipe.txt", "dir/secret.txt", "plain.txt"]
    for it in items(folder, rels):
        assert handoff.offload(it, 30)  # the size the crawl saw before the swap
    handoff._send()
    got = wait_for(lambda: resolved(handoff) or None, timeout=30, what="the worker's answers")
    texts = [str(field) for j in got if isinstance(j, IndexJob) for c in j.chunks for field in c]
    assert not any("basilisk" in t for t in texts)
    assert any("ammonite" in t for t in texts)
    assert [j.path for j in got if isinstance(j, IndexJob) and j.chunks] == ["plain.txt"]  # type: ignore[union-attr]
    assert handoff.counters["prepared_by_worker"] >= 1 and handoff.counters["prep_worker_crashes"] == 0
