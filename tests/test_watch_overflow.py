"""What watchdog hides, made visible: a real inotify queue overflow, and the watch limit (ENOSPC).

The overflow is real: the reader is held while more events than the kernel's
``max_queued_events`` are produced, so the kernel itself queues IN_Q_OVERFLOW. The watch
limit is reached through ``max_watches``, which refuses a watch with ENOSPC at the point
where the kernel would (the system-wide limit cannot be lowered from a test).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import wait_for

from koradaemon.watch.changes import ChangeKind, FileChange
from koradaemon.watch.driver import WatchDriver
from koradaemon.watch.ignore import IgnoreRules
from koradaemon.watch.workqueue import WorkQueue

MAX_QUEUED = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())


def driver_for(root: Path, queue: WorkQueue, **kw: object) -> WatchDriver:
    return WatchDriver(agency_id="a1", root="r", root_path=root, rules=IgnoreRules.for_root(root), queue=queue,
                       debounce_s=0.02, poll_interval_s=0.1, **kw)  # type: ignore[arg-type]


def drain(queue: WorkQueue) -> list[FileChange]:
    out = []
    while (change := queue.get(timeout=0)) is not None:
        out.append(change)
        queue.task_done()
    return out


def wait_change(queue: WorkQueue, kind: ChangeKind, path: str, timeout: float = 5.0) -> list[FileChange]:
    seen: list[FileChange] = []

    def found() -> bool:
        seen.extend(drain(queue))
        return any(c.kind is kind and c.path == path for c in seen)

    wait_for(found, timeout, what=f"{kind.name} {path!r}")
    return seen


def overflow(root: Path, driver: WatchDriver) -> None:
    """Produce a real IN_Q_OVERFLOW: 3 events per file (create, open, close) while the reader is held."""
    files = MAX_QUEUED // 3 + 3000  # + what the reader may already hold in its buffer
    with driver.inotify.hold_reader():
        for i in range(files):
            os.close(os.open(root / f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644))


@pytest.mark.skipif(MAX_QUEUED > 100_000, reason="max_queued_events too large to overflow quickly")
@pytest.mark.parametrize("limit", [5, 1])
def test_real_inotify_overflow_queues_rescan_and_is_counted(tmp_path: Path, limit: int) -> None:
    degraded: list[tuple[str, str]] = []
    queue = WorkQueue(maxsize=1_000_000)
    driver = driver_for(tmp_path, queue, overflow_limit=limit, on_degraded=lambda r, why: degraded.append((r, why)))
    driver.start()
    try:
        overflow(tmp_path, driver)
        wait_change(queue, ChangeKind.RESCAN, "", timeout=20)
        assert driver.stats()["overflows"] >= 1
        if limit == 1:  # an overflow storm: polling from now on, reported
            # the mode switches first, then the report is made (another thread): wait for both
            wait_for(lambda: driver.stats()["mode"] == "polling" and degraded, 5, what="polling, reported")
            assert degraded and degraded[0][0] == "r" and "overflow" in degraded[0][1]
        else:  # watchdog rebuilt its watches: live events still arrive
            assert driver.stats()["mode"] == "inotify" and not degraded
            (tmp_path / "after.md").write_text("after")
            wait_change(queue, ChangeKind.INDEX, "after.md", timeout=20)
    finally:
        driver.stop()


def test_watch_limit_at_start_falls_back_to_polling_and_still_delivers(tmp_path: Path) -> None:
    for d in ("a", "a/b", "c"):
        (tmp_path / d).mkdir()
    degraded: list[tuple[str, str]] = []
    queue = WorkQueue()
    driver = driver_for(tmp_path, queue, max_watches=2, on_degraded=lambda r, why: degraded.append((r, why)))
    driver.start()
    try:
        stats = driver.stats()
        assert stats["mode"] == "polling" and stats["watch_errors"] >= 1
        assert degraded == [("r", "inotify: inotify watch limit reached")]
        assert ChangeKind.RESCAN in {c.kind for c in drain(queue)}
        (tmp_path / "a" / "b" / "new.md").write_text("seen by polling")
        wait_change(queue, ChangeKind.INDEX, "a/b/new.md")
    finally:
        driver.stop()


def test_watch_limit_on_the_root_itself(tmp_path: Path) -> None:
    queue = WorkQueue()
    driver = driver_for(tmp_path, queue, max_watches=0)
    driver.start()
    try:
        assert driver.stats()["mode"] == "polling"
        (tmp_path / "x.md").write_text("x")
        wait_change(queue, ChangeKind.INDEX, "x.md")
    finally:
        driver.stop()


def test_watch_limit_reached_later_by_a_new_directory(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    queue = WorkQueue()
    driver = driver_for(tmp_path, queue, max_watches=2)
    driver.start()
    try:
        assert driver.stats()["mode"] == "inotify"
        wait_for(lambda: driver.stats()["total_dirs"] == 2, 5, what="dirs counted")
        (tmp_path / "two").mkdir()
        wait_for(lambda: driver.stats()["mode"] == "polling", 5, what="polling after ENOSPC")
        t0 = time.monotonic()
        (tmp_path / "two" / "late.md").write_text("late")
        wait_change(queue, ChangeKind.INDEX, "two/late.md")
        assert time.monotonic() - t0 < 5
    finally:
        driver.stop()
