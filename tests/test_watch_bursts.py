"""Bursts on the live path (issue 12): events a later one says again are dropped at the inotify read,
a branch switch's unlink + create + write + close is one INDEX, and the writer keeps a burst's
trickle of live changes in few transactions."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

from conftest import wait_for
from watchdog.observers.inotify_c import InotifyConstants as C
from watchdog.observers.inotify_c import InotifyEvent

from koradaemon.index.db import open_db
from koradaemon.index.jobs import ReadJob
from koradaemon.index.prepare import ChunkParams
from koradaemon.index.store import AgencyStore
from koradaemon.index.writer import Applied, Writer
from koradaemon.watch.changes import ChangeKind, FileChange
from koradaemon.watch.driver import WatchDriver
from koradaemon.watch.ignore import IgnoreRules
from koradaemon.watch.inotify import superseded_dropped
from koradaemon.watch.workqueue import WorkQueue

MOD, CLOSE, CREATE, DELETE = C.IN_MODIFY, C.IN_CLOSE_WRITE, C.IN_CREATE, C.IN_DELETE


def ev(mask: int, name: bytes, wd: int = 1) -> InotifyEvent:
    return InotifyEvent(wd, mask, 0, name)


def masks(events: list[InotifyEvent]) -> list[tuple[int, bytes]]:
    return [(e.mask, e.name) for e in events]


def test_a_modify_before_its_close_or_another_modify_is_dropped() -> None:
    got = superseded_dropped([ev(MOD, b"a"), ev(MOD, b"b"), ev(MOD, b"a"), ev(CLOSE, b"a"), ev(MOD, b"b", wd=2)])
    assert masks(got) == [(MOD, b"b"), (CLOSE, b"a"), (MOD, b"b")], "b's modifies are in two directories"


def test_a_file_replaced_and_written_in_full_is_its_close_alone() -> None:
    got = superseded_dropped([ev(DELETE, b"a"), ev(CREATE, b"a"), ev(MOD, b"a"), ev(CLOSE, b"a")])
    assert masks(got) == [(CLOSE, b"a")]


def test_events_that_say_more_are_kept() -> None:
    kept = [
        [ev(DELETE, b"a"), ev(CREATE | C.IN_ISDIR, b"a")],  # a directory in the file's place
        [ev(DELETE, b"a"), ev(CREATE, b"a")],  # created, not (yet) written: a link, or still open
        [ev(CREATE, b"a"), ev(CLOSE, b"a")],  # a new file: its create says it is new
        [ev(MOD, b"a"), ev(C.IN_MOVED_FROM, b"a"), ev(CREATE, b"a"), ev(CLOSE, b"a")],  # modified, then renamed
        [ev(DELETE, b"a"), ev(C.IN_MOVED_TO, b"a"), ev(CLOSE, b"a")],  # replaced by a rename
    ]
    for events in kept:
        assert masks(superseded_dropped(events)) == masks(events)


def test_real_branch_switch_and_rewrites_reach_the_queue_as_one_index_each(tmp_path: Path) -> None:
    """Real inotify, debounce 0: files replaced the way git does it and files rewritten in place, all
    while the reader is held (so they come in one read): one INDEX per file, no DELETE."""
    root = tmp_path / "root"
    root.mkdir()
    for i in range(40):
        (root / f"f{i}.txt").write_text(f"old {i}\n")
    queue = WorkQueue(maxsize=10_000)
    driver = WatchDriver(agency_id="a1", root="r", root_path=root, rules=IgnoreRules.for_root(root, ()),
                         queue=queue, debounce_s=0)
    driver.start()
    try:
        fd = driver.inotify
        assert fd is not None
        with fd.hold_reader():
            for i in range(40):
                path = root / f"f{i}.txt"
                if i % 2:
                    os.unlink(path)  # git: unlink, create, write, close
                    fd_ = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
                    os.write(fd_, f"new {i}\n".encode())
                    os.close(fd_)
                else:
                    path.write_text(f"rewritten {i}\n")  # truncate, write, close
        seen: list[FileChange] = []

        def all_seen() -> bool:
            while (change := queue.get(timeout=0.01)) is not None:
                seen.append(change)
                queue.task_done()
            return {c.path for c in seen} == {f"f{i}.txt" for i in range(40)}

        wait_for(all_seen, 10, what="a change for every file")
        wait_for(lambda: driver.debouncer.pending() == 0 and queue.depth() == 0, 5, what="nothing held")
        all_seen()
        assert Counter(c.kind for c in seen) == {ChangeKind.INDEX: 40}
        assert fd.superseded >= 60, "a modify per file and a delete + create per replaced file"
    finally:
        driver.stop()


def test_a_trickling_burst_of_live_changes_commits_in_few_transactions(tmp_path: Path) -> None:
    """Live changes arriving a few ms apart once a burst has opened a batch join it (they used to
    commit whenever the queue was empty for a moment); every change has its one audit record."""
    db = tmp_path / "k.db"
    open_db(db).close()
    (tmp_path / "r").mkdir()
    applied: list[Applied] = []
    writer = Writer(db, on_committed=applied.extend)
    n = 60
    for i in range(n):
        (tmp_path / "r" / f"f{i}.txt").write_text(f"burst file {i}\n")
    jobs = [ReadJob("a", "r", f"f{i}.txt", str(tmp_path / "r"), ChunkParams(), False) for i in range(n)]
    writer.submit_many(jobs[:8])  # queued before the writer starts: a deep queue opens a batch
    writer.start()
    try:
        def trickle() -> None:
            for job in jobs[8:]:
                time.sleep(0.002)  # a producer's pace (git writing files), not a synchronisation
                writer.submit(job)

        producer = threading.Thread(target=trickle)
        producer.start()
        producer.join(30)
        writer.flush()
        commits = writer.counters["commits"]
        assert sorted(a.data["path"] for a in applied if a.type == "index") == sorted(f"f{i}.txt" for i in range(n))
        assert len(applied) == n
        assert commits <= 10, f"{commits} commits for {n} files arriving 2 ms apart"
        conn = open_db(db)
        assert AgencyStore(conn, "a").document("r", f"f{n - 1}.txt") is not None
        conn.close()
    finally:
        writer.stop()
