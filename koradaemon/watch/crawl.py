"""The reconcile crawl: walk one watched root (regular files with size and mtime, honouring the ignore
rules), and the crawler thread that runs queued crawls with back-pressure on the work queue.

Symlinked directories are never followed (no cycles, no escape). A symlinked file is listed
(under its own path, with the link's own size and mtime) only when its target is a regular file
inside the root; the indexer records it as skipped (``symlink``) and never reads through it.
Other non-regular files are skipped. Directories that cannot be listed
(permission denied, vanished meanwhile) are logged, counted and skipped.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from .changes import ChangeKind
from .ignore import IgnoreRules
from .walk import walk

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CrawlEntry:
    path: str  # POSIX, relative to the root
    size: int
    mtime_ns: int


@dataclass
class CrawlStats:
    files: int = 0
    dirs: int = 0
    skipped: int = 0
    errors: int = 0
    failed_dirs: list[str] = field(default_factory=list)  # "" = the root itself


def crawl(root_path: Path, rules: IgnoreRules, stats: CrawlStats | None = None) -> Iterator[CrawlEntry]:
    """Yield every indexable file below ``root_path`` (depth first, in no particular order)."""
    st = stats if stats is not None else CrawlStats()
    real_root = os.path.realpath(root_path)

    def failed(rel: str, exc: OSError) -> None:
        st.errors += 1
        st.failed_dirs.append(rel)
        log.warning("crawl_dir_failed", root=str(root_path), dir=rel or ".", error=exc.strerror)

    for rel, entries in walk(root_path, rules, on_error=failed):
        st.dirs += 1
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            found = _entry(entry, child, rules, real_root, st)
            if found is not None:
                st.files += 1
                yield found


def _entry(entry: os.DirEntry[str], rel: str, rules: IgnoreRules, real_root: str, st: CrawlStats) -> CrawlEntry | None:
    try:
        if entry.is_dir(follow_symlinks=False):
            return None  # the walker descends into it unless ignored
        if rules.is_ignored(rel):
            return None
        link = entry.is_symlink()
        if link and not inside(entry.path, real_root):
            st.skipped += 1
            return None
        info = entry.stat(follow_symlinks=True)
        if link and stat.S_ISREG(info.st_mode):
            # The indexer never reads through a link (it records it as skipped, from the link's own
            # lstat): list it with the same figures, so a restart does not see it as changed.
            info = entry.stat(follow_symlinks=False)
            return CrawlEntry(rel, info.st_size, info.st_mtime_ns)
    except OSError:  # vanished or unreadable meanwhile
        st.skipped += 1
        return None
    if not stat.S_ISREG(info.st_mode):
        st.skipped += 1
        return None
    return CrawlEntry(rel, info.st_size, info.st_mtime_ns)


def inside(path: str, real_root: str) -> bool:
    """True when ``path`` (after resolving symlinks) lies inside ``real_root`` (already resolved)."""
    target = os.path.realpath(path)
    return target.startswith(real_root.rstrip("/") + "/")


class Crawler:
    def __init__(
        self,
        *,
        put: Callable[[Any], None],
        depth: Callable[[], int],
        high_water: int,
        is_locked: Callable[[str], bool],
    ) -> None:
        self.put = put
        self.depth = depth
        self.high_water = high_water
        self.is_locked = is_locked
        self._jobs: list[tuple[str, str, Callable[[], Iterable[Any]]]] = []
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kora-crawler", daemon=True)
        self.roots_total = 0
        self.roots_done = 0
        self.changes_queued = 0
        self.running: str | None = None
        self._per_agency: dict[str, dict[str, int]] = {}
        self._syncs: dict[str, dict[str, Any]] = {}  # per agency: its current (or last) sync

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive() or self._thread.ident is None

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def schedule(self, agency_id: str, root: str, changes: Callable[[], Iterable[Any]]) -> None:
        """Queue a reconcile of one root; ``changes`` yields the FileChanges when called."""
        with self._cv:
            if any(a == agency_id and r == root for a, r, _ in self._jobs):
                return  # already pending: one crawl covers both requests
            if not self._busy(agency_id):  # a new sync of this agency starts (more roots join it)
                kind = "rescan" if agency_id in self._syncs else "initial"
                self._syncs[agency_id] = {"kind": kind, "started": time.monotonic(), "walked": None,
                                          "found": 0, "found_bytes": 0, "deletes": 0}
            self._jobs.append((agency_id, root, changes))
            self.roots_total += 1
            self._count(agency_id, "roots_total")
            self._cv.notify()

    @property
    def idle(self) -> bool:
        with self._cv:
            return not self._jobs and self.running is None

    def _busy(self, agency_id: str) -> bool:
        """A walk of this agency is pending or running (call with the lock held)."""
        return (any(a == agency_id for a, _, _ in self._jobs)
                or (self.running is not None and self.running.startswith(agency_id + ":")))

    def agencies(self) -> list[str]:
        """Agencies that had a sync."""
        with self._cv:
            return list(self._syncs)

    def sync(self, agency_id: str) -> dict[str, Any] | None:
        """The agency's current (or last) sync as the walk sees it: ``kind`` (initial | rescan),
        ``started`` and ``walked`` (monotonic; walked is None while a walk is pending or running),
        files ``found`` to (re)index with their bytes, and ``deletes``. None: never synced."""
        with self._cv:
            sync = self._syncs.get(agency_id)
            return dict(sync) if sync is not None else None

    def _count(self, agency_id: str, key: str, n: int = 1) -> None:
        per = self._per_agency.setdefault(agency_id, {"roots_total": 0, "roots_done": 0, "changes_queued": 0})
        per[key] += n

    def progress(self, agency_id: str | None = None) -> dict[str, Any]:
        """Daemon-wide progress, or one agency's own (no other agency's name, root or counts)."""
        if agency_id is None:
            return {"roots_total": self.roots_total, "roots_done": self.roots_done,
                    "changes_queued": self.changes_queued, "running": self.running, "done": self.idle}
        with self._cv:
            per = dict(self._per_agency.get(agency_id, {"roots_total": 0, "roots_done": 0, "changes_queued": 0}))
            running = self.running is not None and self.running.startswith(agency_id + ":")
            busy = self._busy(agency_id)
        return {**per, "running": running, "done": not busy}

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cv:
                while not self._jobs and not self._stop.is_set():
                    self._cv.wait(1.0)
                if self._stop.is_set():
                    return
                agency_id, root, changes = self._jobs.pop(0)
                self.running = f"{agency_id}:{root}"
            try:
                self._crawl(agency_id, root, changes)
            except Exception:
                log.exception("crawl_failed", agency_id=agency_id, root=root)
            finally:
                with self._cv:
                    self.running = None
                    self.roots_done += 1
                    self._count(agency_id, "roots_done")
                    sync = self._syncs.get(agency_id)
                    if sync is not None and not self._busy(agency_id):
                        sync["walked"] = time.monotonic()

    def _crawl(self, agency_id: str, root: str, changes: Callable[[], Iterable[Any]]) -> None:
        if self.is_locked(agency_id):
            return
        t0 = time.monotonic()
        n = 0
        with self._cv:
            sync = self._syncs.get(agency_id)
        for change in changes():
            while self.depth() >= self.high_water:  # back-pressure: never overflow the live queue
                if self._stop.wait(0.005):
                    return
            self.put(change)
            n += 1
            self.changes_queued += 1
            self._count(agency_id, "changes_queued")
            if sync is not None:
                if change.kind is ChangeKind.INDEX:
                    sync["found"] += 1
                    sync["found_bytes"] += change.size
                else:
                    sync["deletes"] += 1
            if self._stop.is_set():
                return
        log.info("crawl_done", agency_id=agency_id, root=root, changes=n, seconds=round(time.monotonic() - t0, 3))

