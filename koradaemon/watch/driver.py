"""The watcher of one agency root: observer → ignore rules → debounce → work queue.

Modes: ``inotify`` (Linux, with overflow and watch-limit detection), ``native`` (watchdog's
default observer elsewhere), ``polling`` (fallback). Lost events (inotify queue overflow) put a
RESCAN of the root on the queue. A watch limit (ENOSPC/EMFILE) anywhere in the tree, or
repeated overflows, switch the root to polling, queue a RESCAN and call ``on_degraded``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
)
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from .changes import ChangeKind, FileChange
from .debounce import Debouncer
from .ignore import IgnoreRules
from .mapping import EventMapper
from .walk import walk
from .workqueue import WorkQueue

log = structlog.get_logger(__name__)

# Only the events the mapper acts on. Leaving out opened / closed-without-writing keeps them out of
# the inotify mask itself: otherwise every file the indexer reads comes back as two more events,
# which cost the bulk crawl about a third of its speed.
WATCHED_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent, DirCreatedEvent, FileModifiedEvent, FileClosedEvent,
    FileDeletedEvent, DirDeletedEvent, FileMovedEvent, DirMovedEvent,
]


class WatchDriver:
    def __init__(
        self,
        *,
        agency_id: str,
        root: str,
        root_path: Path,
        rules: IgnoreRules,
        queue: WorkQueue,
        debounce_s: float = 0.05,
        poll_interval_s: float = 1.0,
        on_degraded: Callable[[str, str], None] | None = None,
        close_delay_s: float | None = None,
        max_watches: int | None = None,
        overflow_limit: int = 5,
        overflow_window_s: float = 60.0,
        force_polling: bool = False,
    ) -> None:
        self.agency_id, self.root, self.root_path = agency_id, root, Path(root_path)
        self.rules, self.queue = rules, queue
        self.poll_interval_s = poll_interval_s
        self.on_degraded = on_degraded
        self.max_watches = max_watches
        self.overflow_limit, self.overflow_window_s = overflow_limit, overflow_window_s
        self.force_polling = force_polling
        self.debouncer = Debouncer(self._release, debounce_s=debounce_s, close_delay_s=close_delay_s,
                                   max_hold_s=max(2.0, debounce_s * 10), name=f"kora-debounce-{agency_id}")
        self.mapper = EventMapper(self.root_path, rules, self.debouncer, self._emit, self._rules_changed)
        self.mode = "stopped"
        self.overflows = self.rescans = self.watch_errors = 0
        self.total_dirs: int | None = None
        self.degraded_reason: str | None = None
        self._observer: BaseObserver | None = None
        self._inotify: Any = None
        self._learner: IgnoreRules | None = None  # the rules being read during the inotify set-up
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._want_polling: str | None = None
        self._rules_dirty = False
        self._overflow_times: deque[float] = deque(maxlen=max(1, overflow_limit))
        self._ctl = threading.Thread(target=self._control, name=f"kora-watch-{agency_id}", daemon=True)

    @property
    def inotify(self) -> Any:
        """The :class:`~koradaemon.watch.inotify.ReportingInotifyFD` in inotify mode, else None."""
        return self._inotify if self.mode == "inotify" else None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.debouncer.start()
        with self._lock:
            try:
                if self.force_polling:
                    raise OSError("polling forced by configuration")
                self._observer, self.mode = self._start_native()
            except OSError as exc:
                self._want_polling = f"watch failed: {exc.strerror or exc}"
        if not self.rules.scanned:  # the inotify set-up did not read the ignore files on its way
            self.rules.reload()
        self._ctl.start()
        if self._want_polling:
            self._switch_to_polling()
        log.info("watch_root_started", agency_id=self.agency_id, root=self.root, mode=self.mode)

    def _start_native(self) -> tuple[BaseObserver, str]:
        if sys.platform.startswith("linux"):
            from .inotify import ReportingInotifyFD, ReportingInotifyObserver

            # The watch set-up lists every kept directory, parents first: it reads the ignore files
            # on its way (one walk of the tree, not two); the rules take them over once it is done.
            self._learner = self.rules.learner()
            fd = ReportingInotifyFD(on_overflow=self._on_overflow, on_watch_error=self._on_watch_error,
                                    max_watches=self.max_watches, skip_dir=self._skip_dir,
                                    on_listed=self._learner.learn)
            try:
                observer: BaseObserver = ReportingInotifyObserver(fd, timeout=0.5, direct=self.mapper)
                self._start_observer(observer)  # adds every watch before it returns
            finally:
                fd.on_listed, learner, self._learner = None, self._learner, None
            self.rules.adopt(learner)
            self._inotify = fd
            return observer, "inotify"
        from watchdog.observers import Observer

        observer = Observer(timeout=0.5)
        self._start_observer(observer)
        return observer, "native"

    def _start_observer(self, observer: BaseObserver) -> None:
        try:
            observer.schedule(self.mapper, str(self.root_path), recursive=True, event_filter=WATCHED_EVENTS)
            observer.start()
        except BaseException:
            _halt(observer)
            raise

    def _skip_dir(self, rel: str) -> bool:
        """An ignored directory below the root: not watched, not walked (called on watchdog's threads)."""
        try:
            return (self._learner or self.rules).is_ignored(rel, True)
        except Exception:  # when in doubt, watch it (the mapper still applies the rules to its events)
            log.exception("watch_skip_check_failed", agency_id=self.agency_id, root=self.root)
            return False

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopping = True
            observer, self._observer = self._observer, None
        self._wake.set()
        if observer is not None:
            _halt(observer, timeout)
        self.debouncer.stop(flush=True, timeout=timeout)
        if self._ctl.is_alive():
            self._ctl.join(timeout)
        self.mode = "stopped"
        log.info("watch_root_stopped", agency_id=self.agency_id, root=self.root)

    # -- hooks (called on watchdog's threads: record and wake, nothing more) -------------------
    def _on_overflow(self) -> None:
        self.overflows += 1
        log.warning("inotify_overflow", agency_id=self.agency_id, root=self.root, count=self.overflows)
        self._rescan()
        now = time.monotonic()
        self._overflow_times.append(now)
        full = len(self._overflow_times) >= self.overflow_limit
        if full and now - self._overflow_times[0] <= self.overflow_window_s:
            self._request_polling(f"{self.overflow_limit} inotify overflows in {self.overflow_window_s:g}s")

    def _on_watch_error(self, exc: OSError) -> None:
        self.watch_errors += 1
        log.warning("inotify_watch_limit", agency_id=self.agency_id, root=self.root, error=exc.strerror)
        self._request_polling(f"inotify: {exc.strerror}")

    def _request_polling(self, reason: str) -> None:
        if self._want_polling is None:
            self._want_polling = reason
        self._wake.set()

    def _rules_changed(self) -> None:
        self._rules_dirty = True
        self._wake.set()

    # -- control thread ----------------------------------------------------------------------
    def _control(self) -> None:
        if self.mode != "inotify":  # with inotify the watch count is the number (no second walk of the tree)
            self.total_dirs = _count_dirs(self.root_path, self.rules, lambda: self._stopping)
        while not self._stopping:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            if self._want_polling and self.mode != "polling":
                self._switch_to_polling()
            if self._rules_dirty:
                self._rules_dirty = False
                self.rules.reload()
                log.info("ignore_rules_reloaded", agency_id=self.agency_id, root=self.root)
                self._rescan()

    def _switch_to_polling(self) -> None:
        reason = self._want_polling or "requested"
        with self._lock:
            if self._stopping or self.mode == "polling":
                return
            old, self._observer = self._observer, None
            if old is not None:
                _halt(old)
            observer = PollingObserver(timeout=self.poll_interval_s)
            try:
                observer.schedule(self.mapper, str(self.root_path), recursive=True, event_filter=WATCHED_EVENTS)
                observer.start()
            except Exception as exc:
                _halt(observer)
                self.mode = "failed"
                log.exception("watch_polling_failed", agency_id=self.agency_id, root=self.root)
                reason = f"{reason}; polling failed: {exc}"
            else:
                self._observer, self.mode = observer, "polling"
        self.degraded_reason = reason
        log.warning("watch_degraded", agency_id=self.agency_id, root=self.root, mode=self.mode, reason=reason)
        self._rescan()
        if self.on_degraded is not None and not self.force_polling:
            try:
                self.on_degraded(self.root, reason)
            except Exception:
                log.exception("watch_on_degraded_failed", root=self.root)
        self.total_dirs = _count_dirs(self.root_path, self.rules, lambda: self._stopping)

    # -- output ------------------------------------------------------------------------------
    def _rescan(self) -> None:
        self.rescans += 1
        self.queue.put(FileChange.rescan(self.agency_id, self.root))

    def _release(self, path: str, kind: ChangeKind) -> None:
        self.queue.put(FileChange(kind, self.agency_id, self.root, path))
        if self.rules.is_ignore_file(path):
            self._rules_changed()

    def _emit(self, kind: ChangeKind, path: str, dest: str | None) -> None:
        self.queue.put(FileChange(kind, self.agency_id, self.root, path, dest))

    def stats(self) -> dict[str, Any]:
        watched = self._inotify.watch_count() if self.mode == "inotify" and self._inotify is not None else None
        return {
            "mode": self.mode,
            "watched_dirs": watched,
            "total_dirs": self.total_dirs if self.total_dirs is not None or watched is None else watched,
            "overflows": self.overflows,
            "rescans": self.rescans,
            "watch_errors": self.watch_errors,
            "events": self.mapper.events,
            "pending": self.debouncer.pending(),
            "released": self.debouncer.released,
            "degraded_reason": self.degraded_reason,
        }


def _halt(observer: BaseObserver, timeout: float = 5.0) -> None:
    observer.stop()
    if observer.is_alive():
        observer.join(timeout)


def _count_dirs(root_path: Path, rules: IgnoreRules, stopping: Callable[[], bool]) -> int | None:
    """Directories below the root that are not ignored (the watches a full tree needs)."""
    count = sum(1 for _ in walk(root_path, rules, stopping=stopping))
    return None if stopping() else count
