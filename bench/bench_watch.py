"""Watch set-up time on a tree of many directories, beside raw watchdog on the same tree.

Run: .venv/bin/python bench/bench_watch.py [--dirs 10000] [--ignored 5000]

Builds a tree of ``--dirs`` directories (10 per level) plus an ignored ``node_modules`` holding
``--ignored`` more, then times (best of 3) until every kept directory has its inotify watch:
koradaemon's WatchDriver (ignore rules, pruning) on the big tree and on a 10-directory tree,
watchdog's own inotify Observer on the big tree (which also watches the ignored directories), and
the floor: a bare ``os.scandir`` walk calling ``inotify_add_watch`` (ctypes) on each kept directory,
with no ignore rules, no event reader and no bookkeeping.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import tempfile
import time
from pathlib import Path

from watchdog.events import FileSystemEventHandler
from watchdog.observers.inotify import InotifyObserver

from koradaemon.watch.driver import WatchDriver
from koradaemon.watch.ignore import IgnoreRules
from koradaemon.watch.workqueue import WorkQueue


def make_tree(root: Path, dirs: int) -> None:
    made = 0
    level = [root]
    while made < dirs:
        nxt = []
        for parent in level:
            for i in range(10):
                if made >= dirs:
                    break
                d = parent / f"d{i}"
                d.mkdir(parents=True)
                nxt.append(d)
                made += 1
        level = nxt


def time_driver(root: Path, want: int) -> float:
    t0 = time.perf_counter()
    driver = WatchDriver(agency_id="bench", root="r", root_path=root,
                         rules=IgnoreRules.for_root(root, ("node_modules/",), scan=False),  # as the daemon does
                         queue=WorkQueue(), debounce_s=0)
    driver.start()
    try:
        while (driver.inotify.watch_count() if driver.inotify else 0) < want:
            time.sleep(0.001)
        return time.perf_counter() - t0
    finally:
        driver.stop()


def time_watchdog(root: Path, want: int) -> float:
    t0 = time.perf_counter()
    obs = InotifyObserver()
    obs.schedule(FileSystemEventHandler(), str(root), recursive=True)
    obs.start()
    try:
        while True:
            emitters = list(obs.emitters)
            group = getattr(emitters[0], "_inotify", None) if emitters else None
            if group is not None and len(group._active_callbacks_by_path) >= want:
                return time.perf_counter() - t0
            time.sleep(0.001)
    finally:
        obs.stop()
        obs.join()


def time_floor(root: Path, want: int) -> float:
    libc = ctypes.CDLL(None, use_errno=True)
    t0 = time.perf_counter()
    fd = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        n, stack = 0, [str(root)]
        while stack:
            top = stack.pop()
            if libc.inotify_add_watch(fd, os.fsencode(top), 0x02000FC6) >= 0:  # the driver's events
                n += 1
            with os.scandir(top) as it:
                stack.extend(e.path for e in it if e.is_dir(follow_symlinks=False) and e.name != "node_modules")
        if n < want:
            raise SystemExit(f"floor: {n} watches, expected {want}")
        return time.perf_counter() - t0
    finally:
        os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dirs", type=int, default=10_000)
    ap.add_argument("--ignored", type=int, default=5_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kora-watch-") as tmp:
        big, small = Path(tmp) / "big", Path(tmp) / "small"
        make_tree(big, args.dirs)
        make_tree(big / "node_modules", args.ignored)
        make_tree(small, 10)
        ours_big = min(time_driver(big, args.dirs + 1) for _ in range(3))
        ours_small = min(time_driver(small, 11) for _ in range(3))
        raw = min(time_watchdog(big, args.dirs + args.ignored + 2) for _ in range(3))
        floor = min(time_floor(big, args.dirs + 1) for _ in range(3))
        print(f"watch set-up, {args.dirs} dirs (+{args.ignored} ignored): {ours_big:.3f} s;"
              f" 10 dirs: {ours_small:.3f} s; extra {ours_big - ours_small:.3f} s"
              f" ({(ours_big - ours_small) * 10_000 / args.dirs:.3f} s per 10,000 dirs)")
        print(f"raw watchdog inotify observer on the same tree (ignored dirs watched too): {raw:.3f} s;"
              f" ratio {ours_big / raw:.2f}")
        print(f"floor (bare scandir walk + inotify_add_watch, no rules): {floor:.3f} s; ratio {ours_big / floor:.2f}")


if __name__ == "__main__":
    main()
