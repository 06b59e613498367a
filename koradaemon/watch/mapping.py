"""watchdog events of one root → debounced INDEX/DELETE and immediate MOVE/tree changes.

Ignored paths are dropped first (cheap). A file's INDEX goes through the debouncer (a close
re-arms it with the short close delay); a delete too, so delete + re-create within the window
becomes one INDEX. Moves and tree changes are passed on at once, after merging what the
debouncer still holds for the paths involved (a file created and renamed inside one window
is just an INDEX of its new name: editor temp file → target is an update of the target).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler

from .changes import ChangeKind
from .crawl import inside
from .debounce import Debouncer
from .ignore import IgnoreRules

log = structlog.get_logger(__name__)

EmitFn = Callable[[ChangeKind, str, str | None], None]
INDEX, DELETE = ChangeKind.INDEX, ChangeKind.DELETE


class EventMapper(FileSystemEventHandler):
    def __init__(
        self,
        root_path: Path,
        rules: IgnoreRules,
        debouncer: Debouncer,
        emit: EmitFn,
        on_rules_changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.prefix = os.fspath(root_path).rstrip("/") + "/"
        self.real_root = os.path.realpath(root_path)
        self.rules = rules
        self.debouncer = debouncer
        self.emit = emit
        self.on_rules_changed = on_rules_changed
        self.events = 0

    def dispatch(self, event: FileSystemEvent) -> None:
        self.events += 1
        try:
            self._dispatch(event)
        except Exception:
            log.exception("watch_event_failed", event=repr(event))

    def _dispatch(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        src = self._rel(event.src_path)
        if kind == "moved":
            self._moved(event, src, self._rel(event.dest_path))
            return
        if src is None:
            if kind == "deleted" and event.is_directory:
                log.error("watch_root_deleted", root=self.prefix)
            return
        if event.is_directory:
            if kind == "deleted":
                self._dir_deleted(src)
            return
        if kind in ("created", "modified", "closed"):
            self._index(src, prompt=kind == "closed", created=kind == "created")
        elif kind == "deleted":
            self._delete(src)

    def _rel(self, path: bytes | str) -> str | None:
        p = os.fsdecode(path)
        return p[len(self.prefix) :] if p.startswith(self.prefix) and len(p) > len(self.prefix) else None

    # -- files -------------------------------------------------------------------------------
    def _index(self, rel: str, *, prompt: bool = False, created: bool = False) -> None:
        if self.rules.is_ignored(rel):
            return
        kind = self._file_kind(rel)
        if kind is not None:
            self.debouncer.touch(rel, kind, prompt=prompt, created=created and kind is INDEX)

    def _delete(self, rel: str) -> None:
        if not self.rules.is_ignored(rel):
            self.debouncer.touch(rel, DELETE)

    def _file_kind(self, rel: str) -> ChangeKind | None:
        """INDEX for a regular file (or a link to one inside the root), DELETE for a link
        leaving the root, None for other things. A path already gone is INDEX too: the
        delete or rename event that follows settles it (a fresh entry then cancels out)."""
        path = self.prefix + rel
        try:
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                if not inside(path, self.real_root):
                    return DELETE
                mode = os.stat(path).st_mode
        except OSError:
            return INDEX
        return INDEX if stat.S_ISREG(mode) else None

    # -- moves -------------------------------------------------------------------------------
    def _moved(self, event: FileSystemEvent, src: str | None, dst: str | None) -> None:
        if any(p is not None and self.rules.is_ignore_file(p) for p in (src, dst)):
            self.on_rules_changed()  # (a written ignore file is seen when its debounced change is released)
        if event.is_directory:
            if not event.is_synthetic:  # the files of a moved directory: covered by MOVE_TREE
                self._dir_moved(src, dst)
            return
        ia = src is None or self.rules.is_ignored(src)
        ib = dst is None or self.rules.is_ignored(dst) or self._file_kind(dst) is not INDEX
        if ia and ib:
            return
        if ib:
            assert src is not None
            self.debouncer.touch(src, DELETE)
        elif ia:
            assert dst is not None
            self.debouncer.take(dst)
            self.debouncer.touch(dst, INDEX, prompt=True)  # e.g. editor temp file renamed over the target
        elif not event.is_synthetic:
            assert src is not None and dst is not None
            self._file_moved(src, dst)

    def _file_moved(self, src: str, dst: str) -> None:
        pending = self.debouncer.take(src)
        self.debouncer.take(dst)  # whatever dst was, it is replaced now
        if pending is not None and pending.fresh:
            self.debouncer.touch(dst, INDEX, prompt=True)  # never reached the index under its old name
            return
        self.emit(ChangeKind.MOVE, src, dst)
        if pending is not None and pending.kind is INDEX:
            self.debouncer.touch(dst, INDEX)  # modified, then renamed

    # -- directories -------------------------------------------------------------------------
    def _dir_moved(self, src: str | None, dst: str | None) -> None:
        ia = src is None or self.rules.is_ignored(src, True)
        ib = dst is None or self.rules.is_ignored(dst, True)
        if ia:  # moved in (or from an ignored place): watchdog brings an event per file
            return
        assert src is not None
        if ib:
            self._dir_deleted(src)
            return
        assert dst is not None
        pending = self.debouncer.take_under(src)
        for path, entry in pending.items():
            if entry.kind is DELETE:
                self.emit(DELETE, path, None)
        self.emit(ChangeKind.MOVE_TREE, src, dst)
        for path, entry in pending.items():
            if entry.kind is INDEX:
                self.debouncer.touch(dst + path[len(src) :], INDEX)

    def _dir_deleted(self, rel: str) -> None:
        if not self.rules.is_ignored(rel, True):
            self.debouncer.take_under(rel)
            self.emit(ChangeKind.DELETE_TREE, rel, None)
