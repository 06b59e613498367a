"""One agency's automatic snapshots: the timer and settled milestones of its state folders.

Owned by that agency's runtime, which starts it, stops it on lockdown and restarts it on
unlock or reload; the snapshots themselves are taken by :class:`~koradaemon.vault.service.SnapshotService`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from .scheduler import SnapshotScheduler

log = structlog.get_logger(__name__)

Request = Callable[[str, str], None]  # (agency_id, trigger)


class SnapshotPolicy:
    def __init__(self, agency_id: str, state_dirs: Sequence[Path], *, interval_s: float, settle_s: float,
                 request: Request) -> None:
        self.agency_id = agency_id
        self.state_dirs = tuple(state_dirs)
        self.settle_s = settle_s
        self._request = request
        self._scheduler = SnapshotScheduler(interval_s=interval_s, settle_s=settle_s,
                                            agencies=[agency_id] if state_dirs else [])
        self._observer: object | None = None

    @property
    def running(self) -> bool:
        return self._observer is not None

    def start(self) -> None:
        """Watch the state folders for milestones (a change, then ``settle_s`` of quiet)."""
        if self._observer is not None or not self.state_dirs or self.settle_s <= 0:
            return
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        scheduler, agency_id = self._scheduler, self.agency_id

        class _Changed(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type not in ("opened", "closed_no_write"):
                    scheduler.note_change(agency_id)

        observer = Observer()
        observer.name = f"kora-state-{agency_id}"
        observer.daemon = True
        for path in self.state_dirs:
            if path.is_dir():
                observer.schedule(_Changed(), str(path), recursive=True)
            else:
                log.warning("state_dir_missing", agency_id=agency_id, path=str(path))
        observer.start()
        self._observer = observer

    def stop(self, timeout: float) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()  # type: ignore[attr-defined]
            observer.join(max(0.0, timeout))  # type: ignore[attr-defined]

    def tick(self) -> None:
        """From the main loop: request the timer and milestone snapshots that are due."""
        for agency_id, trigger in self._scheduler.due():
            self._request(agency_id, trigger)

    def taken(self) -> None:
        """Any snapshot of this agency restarts its timer."""
        self._scheduler.taken(self.agency_id)
