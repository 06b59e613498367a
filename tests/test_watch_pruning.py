"""Ignored directories are never watched (nor walked): at start, and when they appear later."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import wait_for

from koradaemon.watch.changes import ChangeKind
from koradaemon.watch.driver import WatchDriver
from koradaemon.watch.ignore import IgnoreRules
from koradaemon.watch.workqueue import WorkQueue


def watched_dirs(driver: WatchDriver, root: Path) -> set[str]:
    fd = driver.inotify
    assert fd is not None, "inotify mode"
    with fd._lock:
        paths = [w._initial_creation_path for w in fd._watch_for_wd.values()]
    prefix = bytes(root) + b"/"
    return {"" if p == bytes(root) else p[len(prefix):].decode() for p in paths}


def test_ignored_directories_get_no_watch(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for d in ("a/b", "node_modules/x/y", "a/node_modules/z", "build/out"):
        (root / d).mkdir(parents=True)
    queue = WorkQueue()
    driver = WatchDriver(agency_id="a1", root="r", root_path=root,
                         rules=IgnoreRules.for_root(root, ("node_modules/", "build")), queue=queue, debounce_s=0.02)
    driver.start()
    try:
        wait_for(lambda: watched_dirs(driver, root) == {"", "a", "a/b"}, 10, what="watches on the kept tree only")
        (root / "c" / "node_modules" / "deep").mkdir(parents=True)  # appears later: the same rule
        (root / "c" / "d").mkdir()
        wait_for(lambda: watched_dirs(driver, root) == {"", "a", "a/b", "c", "c/d"}, 10, what="new dirs pruned")
        (root / "c" / "d" / "f.md").write_text("x")
        (root / "node_modules" / "x" / "g.md").write_text("x")
        got = []
        while not any(c.path == "c/d/f.md" for c in got):
            change = queue.get(timeout=5)
            assert change is not None, got
            got.append(change)
            queue.task_done()
        assert all(c.kind is ChangeKind.INDEX and not c.path.startswith("node_modules") for c in got)
    finally:
        driver.stop()


def test_directory_with_a_non_utf8_name_is_watched_and_reports_its_files(tmp_path: Path) -> None:
    root = tmp_path / "root"
    odd = bytes(root) + b"/caf\xe9/sub"  # Latin-1 bytes: not UTF-8
    os.makedirs(odd)
    (root / "ignored\udce9").mkdir()  # the same byte, ignored by a rule written as text
    queue = WorkQueue()
    driver = WatchDriver(agency_id="a1", root="r", root_path=root,
                         rules=IgnoreRules.for_root(root, ("ignored\udce9/",)), queue=queue, debounce_s=0.02)
    driver.start()
    try:
        fd = driver.inotify
        assert fd is not None, "inotify mode"

        def watched() -> set[bytes]:
            with fd._lock:
                return {w._initial_creation_path for w in fd._watch_for_wd.values()}

        expected = {bytes(root), bytes(root) + b"/caf\xe9", odd}
        wait_for(lambda: watched() == expected, 10, what="watches below the non-UTF-8 name")
        with open(odd + b"/f.md", "wb") as fh:
            fh.write(b"x")
        change = queue.get(timeout=5)
        assert change is not None and change.path == os.fsdecode(b"caf\xe9/sub/f.md"), change
        queue.task_done()
    finally:
        driver.stop()


def test_watch_set_up_reads_the_ignore_files_on_its_way(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for d in ("a/gen/x", "a/keep", "b/gen"):
        (root / d).mkdir(parents=True)
    (root / "a" / ".gitignore").write_text("gen/\n")  # only below a/
    (root / ".koraignore").write_text("*.log\n")
    rules = IgnoreRules.for_root(root, scan=False)
    assert not rules.scanned and not rules.is_ignored("a/gen", True)
    driver = WatchDriver(agency_id="a1", root="r", root_path=root, rules=rules, queue=WorkQueue(), debounce_s=0.02)
    driver.start()
    try:
        assert rules.scanned
        assert rules.is_ignored("a/gen", True) and rules.is_ignored("a/gen/x/f.md") and rules.is_ignored("c.log")
        assert not rules.is_ignored("b/gen", True)
        assert watched_dirs(driver, root) == {"", "a", "a/keep", "b", "b/gen"}
    finally:
        driver.stop()


def test_polling_mode_reads_the_ignore_files_itself(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / ".gitignore").write_text("*.tmp2\n")
    rules = IgnoreRules.for_root(root, scan=False)
    driver = WatchDriver(agency_id="a1", root="r", root_path=root, rules=rules, queue=WorkQueue(), debounce_s=0.02,
                         force_polling=True)
    driver.start()
    try:
        assert driver.mode == "polling" and rules.scanned and rules.is_ignored("a/x.tmp2")
    finally:
        driver.stop()
