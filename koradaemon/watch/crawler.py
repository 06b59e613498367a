"""The start-up (and rescan) reconcile crawl, run in its own thread with back-pressure.

For each agency root it compares the disk (mtime + size) with the index and puts
INDEX/DELETE changes marked bulk on the work queue; the indexer then compares
sha256 and skips unchanged content.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog

log = structlog.get_logger(__name__)


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
            self._jobs.append((agency_id, root, changes))
            self.roots_total += 1
            self._count(agency_id, "roots_total")
            self._cv.notify()

    @property
    def idle(self) -> bool:
        with self._cv:
            return not self._jobs and self.running is None

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
            pending = any(a == agency_id for a, _, _ in self._jobs)
            running = self.running is not None and self.running.startswith(agency_id + ":")
        return {**per, "running": running, "done": not pending and not running}

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

    def _crawl(self, agency_id: str, root: str, changes: Callable[[], Iterable[Any]]) -> None:
        if self.is_locked(agency_id):
            return
        t0 = time.monotonic()
        n = 0
        for change in changes():
            while self.depth() >= self.high_water:  # back-pressure: never overflow the live queue
                if self._stop.wait(0.005):
                    return
            self.put(change)
            n += 1
            self.changes_queued += 1
            self._count(agency_id, "changes_queued")
            if self._stop.is_set():
                return
        log.info("crawl_done", agency_id=agency_id, root=root, changes=n, seconds=round(time.monotonic() - t0, 3))

