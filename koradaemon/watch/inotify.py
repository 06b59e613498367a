"""A watchdog inotify observer that reports what watchdog itself hides.

watchdog (7.x) answers an inotify queue overflow (``IN_Q_OVERFLOW``) by rebuilding its watches
and logging a warning, but emits no event: the lost changes stay unknown. It also swallows
``ENOSPC``/``EMFILE`` when adding a watch for a subdirectory, which leaves that subtree
silently unwatched. :class:`ReportingInotifyFD` hooks both at the one place inotify is read
and watches are added, and calls back; the driver answers with a rescan or a switch to polling.

It also reads less: events that later events of the same file in the same read say again (a modify
before the close, a delete and create before the close of the new file) are dropped before
watchdog's per-event work (three threads, about 30 µs an event; :func:`superseded_dropped`): a
rewrite burst (truncate, write, close) comes through as one event per file instead of two, a
``git checkout`` (unlink, create, write, close) as one instead of four.

``max_watches`` caps the watches of one observer: beyond it adding a watch fails with
``ENOSPC`` exactly like the kernel's ``max_user_watches`` limit. It is an operator's safety
valve for huge trees and the seam through which tests reach the ENOSPC path.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import sys
from collections.abc import Callable, Iterator

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.api import BaseObserver, EventQueue, ObservedWatch
from watchdog.observers.inotify import InotifyEmitter, InotifyWatchGroup
from watchdog.observers.inotify_c import (
    DEFAULT_EVENT_BUFFER_SIZE,
    CallbackId,
    InotifyConstants,
    InotifyEvent,
    InotifyFD,
    Mask,
    Watch,
    WatchCallback,
    WatchDescriptor,
    inotify_add_watch,
    inotify_rm_watch,
)

log = structlog.get_logger(__name__)

LIMIT_ERRNOS = (errno.ENOSPC, errno.EMFILE)
_MODIFY = InotifyConstants.IN_MODIFY  # a file's (a directory's would carry IN_ISDIR too)
_CREATE, _DELETE = InotifyConstants.IN_CREATE, InotifyConstants.IN_DELETE
_CLOSE_WRITE = InotifyConstants.IN_CLOSE_WRITE
_COVERS_MODIFY = InotifyConstants.IN_MODIFY | InotifyConstants.IN_CLOSE_WRITE
_FS_ENCODING = sys.getfilesystemencoding()


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
        skip_dir: Callable[[str], bool] | None = None,
        on_listed: Callable[[str, list[str]], None] | None = None,
    ) -> None:
        super().__init__()
        self.skip_dir = skip_dir  # relative path (POSIX, from the watched root) → not watched, not walked
        self.on_listed = on_listed  # (relative dir, its entry names), for each directory the set-up lists
        self.on_overflow = on_overflow
        self.on_watch_error = on_watch_error
        self.max_watches = max_watches
        self.overflows = 0
        self.watch_errors = 0
        self.superseded = 0

    def read_events(self, *, event_buffer_size: int = DEFAULT_EVENT_BUFFER_SIZE) -> list[InotifyEvent]:
        events = super().read_events(event_buffer_size=event_buffer_size)
        if len(events) < 2:
            return events
        kept = superseded_dropped(events)
        self.superseded += len(events) - len(kept)
        return kept

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
                self._limit_reached(exc)
            raise

    def add_watches(self, paths: list[bytes], mask: Mask, callback: WatchCallback,
                    id_: CallbackId) -> list[tuple[bytes, WatchDescriptor]]:
        """Watch many directories under one hold of the lock: ``(path, wd)`` for each one watched.

        A directory gone or unreadable meanwhile is left out (its parent's events or a rescan
        cover it). At a watch limit (``ENOSPC``/``EMFILE``, or ``max_watches``) the hook is
        called and the rest are left out: the driver switches the root to polling.
        """
        done: list[tuple[bytes, WatchDescriptor]] = []
        with self._lock:
            fd, table, limit = self._inotify_fd, self._watch_for_wd, self.max_watches
            for path in paths:
                wd = inotify_add_watch(fd, path, mask)
                if wd == -1:
                    err = ctypes.get_errno()
                    if err in LIMIT_ERRNOS:
                        self._limit_reached(OSError(err, os.strerror(err)))
                        break
                    continue
                watch = table.get(wd)
                if watch is None:
                    if limit is not None and len(table) >= limit:
                        inotify_rm_watch(fd, wd)
                        self._limit_reached(OSError(errno.ENOSPC, "inotify watch limit reached"))
                        break
                    watch = table[wd] = Watch(wd, mask, path)
                watch.callbacks[id_] = callback
                done.append((path, wd))
        return done

    def _limit_reached(self, exc: OSError) -> None:
        self.watch_errors += 1
        self._call(functools.partial(self.on_watch_error, exc))

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


def superseded_dropped(events: list[InotifyEvent]) -> list[InotifyEvent]:
    """``events`` (one read, in order) without those that the later events of the same name say again:

    * a file's ``IN_MODIFY`` whose next event is another ``IN_MODIFY`` or its ``IN_CLOSE_WRITE``;
    * a file's ``IN_DELETE`` directly followed by its ``IN_CREATE`` and then (modifies aside) its
      ``IN_CLOSE_WRITE``: a file replaced by a new one written in full (``git checkout``), which the
      close alone re-indexes in one step. Both go.

    Every other event is kept, in order (moves, directories, a modify followed by a rename, a file
    replaced by a link or a directory).
    """
    drop: set[int] = set()
    after: dict[tuple[int, bytes], tuple[int, int]] = {}  # (watch, name) -> (mask, index) of the next event kept
    written: dict[int, tuple[int, int]] = {}  # creates followed by their close-after-write -> what follows them
    for i in range(len(events) - 1, -1, -1):
        event = events[i]
        key = (event.wd, event.name)
        mask, at = after.get(key, (0, -1))
        if event.mask == _MODIFY and mask & _COVERS_MODIFY:
            drop.add(i)
            continue
        if event.mask == _CREATE and mask == _CLOSE_WRITE:
            written[i] = (mask, at)
        elif event.mask == _DELETE and mask == _CREATE and at in written:
            drop.update((i, at))
            after[key] = written[at]
            continue
        after[key] = (event.mask, i)
    return [event for i, event in enumerate(events) if i not in drop] if drop else events


class PruningWatchGroup(InotifyWatchGroup):
    """watchdog's recursive watch group that never watches (nor walks into) an ignored directory.

    One walk adds the watches: each directory is watched before it is listed (so a subdirectory
    created meanwhile still reports itself), listed with ``os.scandir`` (the entry type comes with
    the listing: no ``stat`` per directory), and its kept subdirectories are watched in one batch
    under one lock hold (:meth:`ReportingInotifyFD.add_watches`), not through watchdog's per-watch
    call chain. Ignore decisions are made on the relative path, from the rules' cache.
    """

    def _add_all_callbacks(self, path: bytes) -> None:
        fd = self._inotify_fd
        skip = getattr(fd, "skip_dir", None)
        if skip is None or not isinstance(fd, ReportingInotifyFD) or not self.is_recursive or self.follow_symlink:
            super()._add_all_callbacks(path)
            return
        root = self.path
        if path == root:
            rel = ""
        elif path.startswith(root + b"/"):
            rel = os.fsdecode(path[len(root) + 1 :])
            if skip(rel):
                return
        else:  # not below the root (cannot happen): watchdog's own way
            super()._add_all_callbacks(path)
            return
        by_path, by_wd = self._active_callbacks_by_path, self._active_callbacks_by_watch
        if path not in by_path:  # a parent's creation may have added it already (mkdir -p a/b)
            self._add_callback(path)  # the root's failure must reach the caller, as in watchdog
        mask, callback, id_ = self.event_mask, self._callback, self._id
        root_text = os.fsdecode(root)  # listed as text: scandir of a str path is the faster one
        listed = fd.on_listed if path == root else None
        stack = [(path, rel)]
        while stack:
            top, top_rel = stack.pop()
            try:
                with os.scandir(f"{root_text}/{top_rel}" if top_rel else root_text) as it:
                    entries = list(it)
            except OSError as exc:  # gone or unreadable meanwhile: its own events (or a rescan) cover it
                if not isinstance(exc, (FileNotFoundError, NotADirectoryError)):
                    log.warning("watch_dir_unlisted", dir=top_rel or ".", error=exc.strerror)
                continue
            if listed is not None:  # before its subdirectories are chosen: its ignore files count
                listed(top_rel, [e.name for e in entries])
            subdirs = [e.name for e in entries if _is_dir(e)]
            fresh: list[bytes] = []
            for name in subdirs:
                sub_rel = f"{top_rel}/{name}" if top_rel else name
                if skip(sub_rel):
                    continue
                sub = top + b"/" + name.encode(_FS_ENCODING, "surrogateescape")
                stack.append((sub, sub_rel))
                if sub not in by_path:
                    fresh.append(sub)
            for sub, wd in fd.add_watches(fresh, mask, callback, id_) if fresh else ():
                by_path[sub] = wd
                by_wd[wd] = sub


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


class PruningInotifyEmitter(InotifyEmitter):
    """watchdog's emitter on a :class:`PruningWatchGroup`, with a cheaper event filter: whether an event
    type passes is decided once per type (watchdog asks ``isinstance`` of every filter class, for
    every event and for the directory event most of them bring along).

    With ``direct`` (the one handler of this observer) an event that passes is handed to it here, on
    the emitter's thread, in order: not through the observer's queue to its dispatch thread (one
    thread hop and two locks less per event).
    """

    def __init__(self, event_queue: EventQueue, watch: ObservedWatch, *, timeout: float = 1.0,
                 event_filter: list[type[FileSystemEvent]] | None = None, inotify_fd: InotifyFD | None = None,
                 direct: FileSystemEventHandler | None = None) -> None:
        super().__init__(event_queue, watch, timeout=timeout, event_filter=event_filter, inotify_fd=inotify_fd)
        self._direct = direct
        self._passes: dict[type[FileSystemEvent], bool] = {}

    def queue_event(self, event: FileSystemEvent) -> None:
        kind = type(event)
        ok = self._passes.get(kind)
        if ok is None:
            ok = self._passes[kind] = self._event_filter is None or any(
                isinstance(event, cls) for cls in self._event_filter)
        if not ok:
            return
        if self._direct is not None:
            self._direct.dispatch(event)
        else:
            self._event_queue.put((event, self.watch))

    def on_thread_start(self) -> None:
        self._inotify = PruningWatchGroup(
            self._inotify_fd,
            os.fsencode(self.watch.path),
            is_recursive=self.watch.is_recursive,
            event_mask=self.get_event_mask_from_filter(),
            follow_symlink=self.watch.follow_symlink,
        )


class ReportingInotifyObserver(BaseObserver):
    """watchdog's InotifyObserver, on a :class:`ReportingInotifyFD`, pruning ignored directories.

    ``direct``: the handler that will be scheduled on this observer, called by the emitter itself
    (see :class:`PruningInotifyEmitter`); schedule no other handler then."""

    def __init__(self, inotify_fd: ReportingInotifyFD, *, timeout: float = 1.0,
                 direct: FileSystemEventHandler | None = None) -> None:
        self.inotify_fd = inotify_fd
        inotify_fd.start()
        super().__init__(PruningInotifyEmitter, timeout=timeout, inotify_fd=inotify_fd, direct=direct)

    def on_thread_stop(self) -> None:
        super().on_thread_stop()
        self.inotify_fd.stop()
        if self.inotify_fd.is_alive():
            self.inotify_fd.join(5.0)
