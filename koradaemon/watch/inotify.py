"""A watchdog inotify observer that reports what watchdog itself hides.

watchdog (7.x) answers an inotify queue overflow (``IN_Q_OVERFLOW``) by rebuilding its watches
and logging a warning, but emits no event: the lost changes stay unknown. It also swallows
``ENOSPC``/``EMFILE`` when adding a watch for a subdirectory, which leaves that subtree
silently unwatched. :class:`ReportingInotifyFD` hooks both at the one place inotify is read
and watches are added, and calls back; the driver answers with a rescan or a switch to polling.

``max_watches`` caps the watches of one observer: beyond it adding a watch fails with
``ENOSPC`` exactly like the kernel's ``max_user_watches`` limit. It is an operator's safety
valve for huge trees and the seam through which tests reach the ENOSPC path.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
from collections.abc import Callable, Iterator

import structlog
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify import InotifyEmitter, InotifyWatchGroup
from watchdog.observers.inotify_c import InotifyEvent, InotifyFD, Mask, Watch, inotify_rm_watch

log = structlog.get_logger(__name__)

LIMIT_ERRNOS = (errno.ENOSPC, errno.EMFILE)


class ReportingInotifyFD(InotifyFD):
    """An inotify instance that calls ``on_overflow()`` and ``on_watch_error(exc)``.

    Both callbacks run on watchdog's threads (the reader, or the caller of ``start``) with
    watchdog's locks held: they must only record the fact and wake someone else.
    """

    def __init__(
        self,
        *,
        on_overflow: Callable[[], None],
        on_watch_error: Callable[[OSError], None],
        max_watches: int | None = None,
        skip_dir: Callable[[bytes], bool] | None = None,
    ) -> None:
        super().__init__()
        self.skip_dir = skip_dir
        self.on_overflow = on_overflow
        self.on_watch_error = on_watch_error
        self.max_watches = max_watches
        self.overflows = 0
        self.watch_errors = 0

    def handle_event(self, event: InotifyEvent) -> None:
        super().handle_event(event)  # on overflow watchdog rebuilds its watches first
        if event.is_queue_overflow:
            self.overflows += 1
            self._call(self.on_overflow)

    def _get_or_create_watch(self, path: bytes, mask: Mask) -> Watch:
        try:
            before = len(self._watch_for_wd)
            watch = super()._get_or_create_watch(path, mask)
            if self.max_watches is not None and len(self._watch_for_wd) > max(before, self.max_watches):
                self._watch_for_wd.pop(watch.wd, None)
                inotify_rm_watch(self._inotify_fd, watch.wd)
                raise OSError(errno.ENOSPC, "inotify watch limit reached")
            return watch
        except OSError as exc:
            if exc.errno in LIMIT_ERRNOS:
                self.watch_errors += 1
                self._call(functools.partial(self.on_watch_error, exc))
            raise

    @contextlib.contextmanager
    def hold_reader(self) -> Iterator[None]:
        """Keep the reader thread from consuming events while inside (to provoke a real
        kernel queue overflow in tests; events are not lost by this alone)."""
        with self._lock:
            yield

    def watch_count(self) -> int:
        with self._lock:
            return len(self._watch_for_wd)

    @staticmethod
    def _call(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("inotify_hook_failed")


class PruningWatchGroup(InotifyWatchGroup):
    """watchdog's recursive watch group that never watches (nor walks into) an ignored directory.

    Directories are listed with ``os.scandir`` (the entry type comes with the listing: no
    ``stat``/``islink`` per directory, unlike watchdog's ``os.walk`` loop).
    """

    def _add_all_callbacks(self, path: bytes) -> None:
        skip = getattr(self._inotify_fd, "skip_dir", None)
        if skip is None or not self.is_recursive or self.follow_symlink:
            super()._add_all_callbacks(path)
            return
        if path != self.path and skip(path):
            return
        known: dict[bytes, int] = getattr(self, "_active_callbacks_by_path", {})
        if path not in known:  # a parent's creation may have added it already (mkdir -p a/b)
            self._add_callback(path)
        stack = [path]
        while stack:
            top = stack.pop()
            try:
                with os.scandir(top) as it:
                    subdirs = [e.path for e in it if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue  # gone or unreadable meanwhile: its own events (or a rescan) cover it
            for sub in subdirs:
                if not skip(sub):
                    if sub not in known:
                        self._add_callback(sub)
                    stack.append(sub)


class PruningInotifyEmitter(InotifyEmitter):
    def on_thread_start(self) -> None:
        self._inotify = PruningWatchGroup(
            self._inotify_fd,
            os.fsencode(self.watch.path),
            is_recursive=self.watch.is_recursive,
            event_mask=self.get_event_mask_from_filter(),
            follow_symlink=self.watch.follow_symlink,
        )


class ReportingInotifyObserver(BaseObserver):
    """watchdog's InotifyObserver, on a :class:`ReportingInotifyFD`, pruning ignored directories."""

    def __init__(self, inotify_fd: ReportingInotifyFD, *, timeout: float = 1.0) -> None:
        self.inotify_fd = inotify_fd
        inotify_fd.start()
        super().__init__(PruningInotifyEmitter, timeout=timeout, inotify_fd=inotify_fd)

    def on_thread_stop(self) -> None:
        super().on_thread_stop()
        self.inotify_fd.stop()
        if self.inotify_fd.is_alive():
            self.inotify_fd.join(5.0)
