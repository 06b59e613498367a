"""WatchDriver on real inotify in tmp_path: event mapping, ignore rules, symlinks, debounce."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import wait_for

from koradaemon.watch.changes import ChangeKind, FileChange
from koradaemon.watch.driver import WatchDriver
from koradaemon.watch.ignore import IgnoreRules
from koradaemon.watch.workqueue import WorkQueue

INDEX, DELETE, MOVE = ChangeKind.INDEX, ChangeKind.DELETE, ChangeKind.MOVE
DEBOUNCE = 0.03


class Watched:
    def __init__(self, root: Path, queue: WorkQueue, driver: WatchDriver) -> None:
        self.root, self.queue, self.driver = root, queue, driver
        self.seen: list[FileChange] = []

    def collect(self, until: Callable[[list[FileChange]], bool], timeout: float = 5.0) -> list[FileChange]:
        deadline = time.monotonic() + timeout
        while not until(self.seen):
            if time.monotonic() > deadline:
                pytest.fail(f"timed out; saw {self.seen}")
            change = self.queue.get(timeout=0.05)
            if change is not None:
                self.seen.append(change)
                self.queue.task_done()
        return self.seen

    def quiet(self) -> list[FileChange]:
        """Everything the driver still produces once it has nothing pending."""
        deadline = time.monotonic() + 5
        while self.driver.debouncer.pending() or self.queue.depth():
            change = self.queue.get(timeout=0.05)
            if change is not None:
                self.seen.append(change)
                self.queue.task_done()
            assert time.monotonic() < deadline, self.seen
        return self.seen

    def has(self, kind: ChangeKind, path: str, dest: str | None = None) -> Callable[[list[FileChange]], bool]:
        return lambda seen: any(c.kind is kind and c.path == path and c.dest_path == dest for c in seen)

    def sync(self) -> None:
        """Round trip through the watcher: events before this call have been seen by the debouncer."""
        marker = self.root / f"sync-{time.monotonic_ns()}.md"
        marker.write_text("x")
        self.collect(self.has(INDEX, marker.name))


def make(tmp_path: Path, globs: tuple[str, ...] = (), **kw: object) -> Watched:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    queue = WorkQueue(maxsize=1000)
    driver = WatchDriver(agency_id="a1", root="agents/a1", root_path=root, rules=IgnoreRules.for_root(root, globs),
                         queue=queue, debounce_s=DEBOUNCE, poll_interval_s=0.1, **kw)  # type: ignore[arg-type]
    driver.start()
    return Watched(root, queue, driver)


@pytest.fixture
def w(tmp_path: Path) -> Iterator[Watched]:
    watched = make(tmp_path, ("*.log", "build/"))
    yield watched
    watched.driver.stop()


def test_create_close_gives_one_index_with_root_and_relative_path(w: Watched) -> None:
    assert w.driver.stats()["mode"] == "inotify"
    (w.root / "sub").mkdir()
    (w.root / "sub" / "a.md").write_text("hello")
    seen = w.collect(w.has(INDEX, "sub/a.md"))
    change = next(c for c in seen if c.path == "sub/a.md")
    assert (change.agency_id, change.root, change.bulk) == ("a1", "agents/a1", False)
    assert [c.path for c in w.quiet()].count("sub/a.md") == 1


def test_modify_and_delete(w: Watched) -> None:
    f = w.root / "a.md"
    f.write_text("one")
    w.collect(w.has(INDEX, "a.md"))
    w.seen.clear()
    with f.open("a") as fh:
        fh.write("two")
    w.collect(w.has(INDEX, "a.md"))
    f.unlink()
    w.collect(w.has(DELETE, "a.md"))


def test_burst_of_writes_coalesces_into_one_index(w: Watched) -> None:
    f = w.root / "burst.md"
    with f.open("w") as fh:
        for i in range(100):
            fh.write(f"line {i}\n")
            fh.flush()
    seen = w.collect(w.has(INDEX, "burst.md"))
    assert [c.path for c in w.quiet()] == ["burst.md"]
    assert w.driver.debouncer.merged >= 1, seen  # (the kernel also merges identical unread events)


def test_close_releases_sooner_than_the_debounce(w: Watched) -> None:
    f = w.root / "fast.md"
    t0 = time.monotonic()
    f.write_text("fast")
    w.collect(w.has(INDEX, "fast.md"))
    assert time.monotonic() - t0 < DEBOUNCE + 0.5  # close → queue is the short close delay, not a long wait


def test_atomic_save_via_temp_file_is_an_update_of_the_target(w: Watched) -> None:
    target = w.root / "doc.md"
    target.write_text("v1")
    w.collect(w.has(INDEX, "doc.md"))
    w.seen.clear()
    for tmp_name in ("doc.md.tmp", ".goutputstream-XYZ1", "doc.md.kora-new"):  # ignored and not ignored names
        tmp = w.root / tmp_name
        tmp.write_text("v2 " + tmp_name)
        os.replace(tmp, target)
        w.collect(w.has(INDEX, "doc.md"))
        seen = w.quiet()
        assert all(c.path == "doc.md" and c.kind is INDEX for c in seen), seen
        w.seen.clear()


def test_rename_of_an_indexed_file_is_a_move(w: Watched) -> None:
    (w.root / "old.md").write_text("x")
    w.collect(w.has(INDEX, "old.md"))
    w.quiet()
    (w.root / "old.md").rename(w.root / "new.md")
    w.collect(w.has(MOVE, "old.md", "new.md"))


def test_directory_moves_in_out_and_within(tmp_path: Path, w: Watched) -> None:
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "x.md").write_text("x")
    (outside / "y.md").write_text("y")
    outside.rename(w.root / "inbox")
    w.collect(lambda s: w.has(INDEX, "inbox/deep/x.md")(s) and w.has(INDEX, "inbox/y.md")(s))
    w.quiet()
    (w.root / "inbox").rename(w.root / "archive")
    w.collect(w.has(ChangeKind.MOVE_TREE, "inbox", "archive"))
    (w.root / "archive").rename(tmp_path / "gone")
    w.collect(w.has(ChangeKind.DELETE_TREE, "archive"))


def test_directory_deleted_gives_delete_tree(w: Watched) -> None:
    d = w.root / "d"
    d.mkdir()
    (d / "f.md").write_text("f")
    w.collect(w.has(INDEX, "d/f.md"))
    (d / "f.md").unlink()
    d.rmdir()
    w.collect(w.has(ChangeKind.DELETE_TREE, "d"))


def test_ignore_globs_gitignore_negation_and_koraignore(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / ".gitignore").write_text("*.bak\n!keep.bak\nsecret/\n")
    (root / "sub").mkdir()
    (root / "sub" / ".koraignore").write_text("/local.md\n")
    w = make(tmp_path, ("*.log", "build/"))
    try:
        for name in ("x.log", "a.bak", "keep.bak", "secret/s.md", "build/b.md", "sub/local.md", "local.md",
                     "x.swp", ".#lock", "4913", ".git/config", "ok.md"):
            (w.root / name).parent.mkdir(parents=True, exist_ok=True)
            (w.root / name).write_text(name)
        w.sync()
        paths = {c.path for c in w.quiet() if c.kind is INDEX}
        assert {"keep.bak", "local.md", "ok.md"} <= paths
        assert not paths & {"x.log", "a.bak", "secret/s.md", "build/b.md", "sub/local.md", "x.swp", ".#lock",
                            "4913", ".git/config"}
    finally:
        w.driver.stop()


def test_changed_ignore_file_reloads_rules_and_rescans(w: Watched) -> None:
    (w.root / ".koraignore").write_text("*.draft\n")
    w.collect(w.has(ChangeKind.RESCAN, ""))
    assert w.driver.rules.is_ignored("x.draft")
    (w.root / "x.draft").write_text("d")
    w.sync()
    assert "x.draft" not in {c.path for c in w.quiet()}


def test_symlink_leaving_the_root_is_not_followed(tmp_path: Path, w: Watched) -> None:
    secret = tmp_path / "secret.md"
    secret.write_text("do not index")
    inner = w.root / "inner.md"
    inner.write_text("inner")
    w.collect(w.has(INDEX, "inner.md"))
    (w.root / "escape.md").symlink_to(secret)
    (w.root / "alias.md").symlink_to(inner)
    w.collect(w.has(INDEX, "alias.md"))
    assert not any(c.kind is INDEX and c.path == "escape.md" for c in w.quiet())


def test_stop_flushes_pending_and_stats_report(w: Watched) -> None:
    w.driver.debouncer.debounce_s = w.driver.debouncer.close_delay_s = 30.0  # hold it until stop
    (w.root / "late.md").write_text("late")
    wait_for(lambda: w.driver.debouncer.pending(), 5, what="event pending")
    w.driver.stop()
    stats = w.driver.stats()
    assert stats["mode"] == "stopped" and stats["pending"] == 0
    w.collect(w.has(INDEX, "late.md"), timeout=1)


def test_polling_mode_delivers_the_same_kinds_of_change(tmp_path: Path) -> None:
    w = make(tmp_path, force_polling=True)
    try:
        assert w.driver.stats()["mode"] == "polling"
        (w.root / "d").mkdir()
        (w.root / "d" / "a.md").write_text("a")
        w.collect(w.has(INDEX, "d/a.md"))
        (w.root / "d" / "a.md").rename(w.root / "d" / "b.md")
        w.collect(w.has(MOVE, "d/a.md", "d/b.md"))
        (w.root / "d").rename(w.root / "e")
        w.collect(w.has(ChangeKind.MOVE_TREE, "d", "e"))
        (w.root / "e" / "b.md").unlink()
        w.collect(w.has(DELETE, "e/b.md"))
    finally:
        w.driver.stop()
