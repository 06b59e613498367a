"""The watchers of every agency root, started and stopped per agency (lockdown, reload)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from ..config_model import AgencyConfig, Config
from .driver import WatchDriver
from .ignore import IgnoreRules
from .workqueue import WorkQueue

log = structlog.get_logger(__name__)


def daemon_ignores(cfg: Config) -> tuple[str, ...]:
    """Globs for the daemon's own files, in case a watched root contains the data root's files."""
    own = [cfg.index.database, cfg.index.database + "-wal", cfg.index.database + "-shm", cfg.log.file]
    return tuple(Path(p).name for p in own)


class WatchSet:
    def __init__(
        self, cfg: Config, work: WorkQueue, on_degraded: Callable[[str, str, str], None] | None = None
    ) -> None:
        self.cfg = cfg
        self.work = work
        self.on_degraded = on_degraded
        self.drivers: dict[str, list[WatchDriver]] = {}
        self.rules: dict[tuple[str, str], IgnoreRules] = {}
        self._lock = threading.Lock()

    def root_paths(self) -> dict[tuple[str, str], Path]:
        return {(a.agency_id, r): self.cfg.path(r) for a in self.cfg.agencies for r in a.roots}

    def rules_for(self, agency: AgencyConfig, root: str) -> IgnoreRules:
        key = (agency.agency_id, root)
        if key not in self.rules:
            globs = tuple(agency.ignore) + daemon_ignores(self.cfg)
            self.rules[key] = IgnoreRules.for_root(self.cfg.path(root), globs)
        return self.rules[key]

    def start_agency(self, agency: AgencyConfig) -> None:
        with self._lock:
            if agency.agency_id in self.drivers:
                return
            started: list[WatchDriver] = []
            for root in agency.roots:
                root_path = self.cfg.path(root)
                if not root_path.is_dir():  # never created: a typo must not become an empty watched folder
                    self._degraded(agency.agency_id)(root, "the root does not exist: not watched")
                    continue
                driver = WatchDriver(
                    agency_id=agency.agency_id,
                    root=root,
                    root_path=root_path,
                    rules=self.rules_for(agency, root),
                    queue=self.work,
                    debounce_s=self.cfg.watch.debounce_ms / 1000,
                    poll_interval_s=self.cfg.watch.poll_interval_ms / 1000,
                    on_degraded=self._degraded(agency.agency_id),
                )
                driver.start()
                started.append(driver)
            self.drivers[agency.agency_id] = started
            log.info("watch_started", agency_id=agency.agency_id, roots=list(agency.roots))

    def _degraded(self, agency_id: str) -> Callable[[str, str], None]:
        def report(root: str, reason: str) -> None:
            log.warning("watch_degraded", agency_id=agency_id, root=root, reason=reason)
            if self.on_degraded is not None:
                self.on_degraded(agency_id, root, reason)

        return report

    def stop_agency(self, agency_id: str, timeout: float = 5.0) -> None:
        with self._lock:
            drivers = self.drivers.pop(agency_id, [])
        for d in drivers:
            d.stop()
        if drivers:
            log.info("watch_stopped", agency_id=agency_id)
        for key in [k for k in self.rules if k[0] == agency_id]:
            del self.rules[key]

    def stop_all(self) -> None:
        for agency_id in list(self.drivers):
            self.stop_agency(agency_id)

    def stats(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return {a: [dict(d.stats(), root=d.root) for d in ds] for a, ds in self.drivers.items()}
