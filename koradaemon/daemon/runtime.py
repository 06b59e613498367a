"""One agency's runtime: it owns everything of that agency and nothing of any other.

Watchers and ignore rules of its roots, its snapshot policy (timer, milestones), its lockdown
state and its agent (when the agent works for it). ``lock`` stops every automatic action of the
agency and ``unlock`` restarts exactly what ``lock`` stopped; ``apply`` takes a new configuration
of the agency without a restart.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Protocol

import structlog

from ..audit.lockdown import LockdownRegistry
from ..config_model import AgencyConfig, Config
from ..errors import LockdownError
from ..events import EventBus
from ..index.service import IndexPipeline
from ..vault.policy import SnapshotPolicy
from ..vault.service import SnapshotService
from ..watch.driver import WatchDriver
from ..watch.ignore import IgnoreRules

log = structlog.get_logger(__name__)


class Agent(Protocol):
    """The supervised agent, as far as its agency's runtime needs it."""

    def start(self) -> None: ...
    def stop(self, timeout: float = ...) -> None: ...
    def status(self) -> dict[str, object]: ...


class LockControl(Protocol):
    """Audited lock and unlock (the audit manager)."""

    def lock(self, agency_id: str, reason: str) -> None: ...
    def unlock(self, agency_id: str, reason: str) -> object: ...


def daemon_ignores(cfg: Config) -> tuple[str, ...]:
    """Globs for the daemon's own files, in case a watched root contains the data root's files."""
    own = [cfg.index.database, cfg.index.database + "-wal", cfg.index.database + "-shm", cfg.log.file]
    return tuple(Path(p).name for p in own)


class AgencyRuntime:
    def __init__(self, cfg: Config, agency: AgencyConfig, *, pipeline: IndexPipeline, vault: SnapshotService,
                 lockdown: LockdownRegistry, audit: LockControl, events: EventBus) -> None:
        self.cfg = cfg
        self.agency = agency
        self.agency_id = agency.agency_id
        self.pipeline = pipeline
        self.vault = vault
        self.lockdown = lockdown
        self.audit = audit
        self.events = events
        self.agent: Agent | None = None
        self.degraded_roots: dict[str, str] = {}
        self._drivers: list[WatchDriver] = []
        self._policy: SnapshotPolicy | None = None
        self._active = False
        self._mutex = threading.RLock()

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def locked(self) -> bool:
        return self.lockdown.is_locked(self.agency_id)

    @property
    def active(self) -> bool:
        """Watchers and snapshot policy are running (false while locked or stopped)."""
        return self._active

    def start(self) -> None:
        self._attach_roots()
        if self.locked:
            log.warning("agency_locked", agency_id=self.agency_id, action="watchers and snapshots stay off")
        else:
            self._resume()
        if self.agent is not None:
            self.agent.start()

    def stop_watching(self, deadline: float) -> None:
        self._suspend(deadline)

    def stop(self, deadline: float) -> None:
        """Watchers and policy off, then the agent (drained within what is left)."""
        self._suspend(deadline)
        if self.agent is not None:
            self.agent.stop(max(0.1, deadline - time.monotonic()))

    def check_unlocked(self) -> None:
        if self.locked:
            raise LockdownError(
                f"agency {self.agency_id!r} is in lockdown: its audit chain failed verification or was locked",
                hint=f"inspect with 'koradaemon audit verify --agency {self.agency_id}', then "
                f"'koradaemon audit unlock --agency {self.agency_id} --reason ...'",
            )

    # -- lockdown -------------------------------------------------------------------------
    def lock(self, reason: str) -> None:
        """Audited lockdown; the registry then calls :meth:`on_lockdown`, which stops everything automatic."""
        self.audit.lock(self.agency_id, reason)

    def unlock(self, reason: str) -> object:
        """Audited unlock; :meth:`on_lockdown` restarts exactly what the lockdown stopped."""
        return self.audit.unlock(self.agency_id, reason)

    def on_lockdown(self, locked: bool) -> None:
        if locked:
            log.error("agency_lockdown", agency_id=self.agency_id)
            self._suspend(time.monotonic() + 10.0)
            self.events.emit(self.agency_id, "lockdown")
        else:
            log.warning("agency_unlocked", agency_id=self.agency_id)
            self._resume()
            self.events.emit(self.agency_id, "unlock")

    # -- configuration --------------------------------------------------------------------
    def apply(self, cfg: Config, agency: AgencyConfig) -> list[str]:
        """Take a new configuration of this agency live; returns what changed."""
        changed: list[str] = []
        with self._mutex:
            old_cfg, old = self.cfg, self.agency
            if (old.roots, old.ignore) != (agency.roots, agency.ignore) or self.degraded_roots:
                changed.append("roots")  # also: retry roots that were missing or failed to start
            if old_cfg.watch != cfg.watch:
                changed.append("watch")
            if old.state_dirs != agency.state_dirs or old_cfg.vault != cfg.vault:
                changed.append("snapshots")
            if not changed:
                self.cfg = cfg
                return changed
            was_active = self._active
            self._suspend(time.monotonic() + 10.0)
            self.cfg, self.agency = cfg, agency
            if "roots" in changed:
                self.pipeline.detach(self.agency_id)
                self._attach_roots()
            if was_active:
                self._resume(reconcile=("roots" in changed))
        log.info("agency_reconfigured", agency_id=self.agency_id, changed=changed)
        return changed

    # -- automatic actions ------------------------------------------------------------------
    def tick(self) -> None:
        policy = self._policy
        if self._active and policy is not None:
            policy.tick()

    def request_snapshot(self, trigger: str) -> None:
        if self.locked:
            log.warning("snapshot_skipped", agency_id=self.agency_id, trigger=trigger, reason="lockdown")
            return
        if self.agency.state_dirs:
            self.vault.request(self.agency_id, trigger)

    def snapshot_taken(self) -> None:
        policy = self._policy
        if policy is not None:
            policy.taken()

    # -- internals ----------------------------------------------------------------------------
    def _rules(self, root: str) -> IgnoreRules:
        globs = tuple(self.agency.ignore) + daemon_ignores(self.cfg)
        return IgnoreRules.for_root(self.cfg.path(root), globs, scan=False)  # the watch set-up reads the ignore files

    def _attach_roots(self) -> None:
        for root in self.agency.roots:
            self.pipeline.attach(self.agency_id, root, self.cfg.path(root), self._rules(root))

    def _resume(self, *, reconcile: bool = True) -> None:
        with self._mutex:
            if self._active or self.locked:
                return
            watch = self.cfg.watch
            for root in self.agency.roots:
                entry = self.pipeline.roots.get(self.agency_id, root)
                if entry is None:
                    continue
                if not entry.path.is_dir():  # never created: a typo must not become an empty watched folder
                    self._degraded(root, "the root does not exist: not watched")
                    continue
                driver = WatchDriver(agency_id=self.agency_id, root=root, root_path=entry.path, rules=entry.rules,
                                     queue=self.pipeline.work, debounce_s=watch.debounce_ms / 1000,
                                     poll_interval_s=watch.poll_interval_ms / 1000, on_degraded=self._degraded)
                try:
                    driver.start()
                except Exception as exc:
                    log.error("watch_start_failed", agency_id=self.agency_id, root=root, error=str(exc))
                    self.degraded_roots[root] = f"not watched: {exc}"
                    continue
                self._drivers.append(driver)
                self.degraded_roots.pop(root, None)
                if reconcile:
                    self.pipeline.reconcile(self.agency_id, root)
            v = self.cfg.vault
            if v.enabled and self.agency.state_dirs:
                self._policy = SnapshotPolicy(self.agency_id, [self.cfg.path(d) for d in self.agency.state_dirs],
                                              interval_s=v.auto_interval_s, settle_s=v.milestone_settle_s,
                                              request=lambda agency_id, trigger: self.request_snapshot(trigger))
                self._policy.start()
            self._active = True
            log.info("agency_active", agency_id=self.agency_id, roots=list(self.agency.roots))

    def _suspend(self, deadline: float) -> None:
        with self._mutex:
            drivers, self._drivers = self._drivers, []
            policy, self._policy = self._policy, None
            was_active, self._active = self._active, False
        for d in drivers:
            try:
                d.stop(max(0.05, deadline - time.monotonic()))
            except Exception as exc:
                log.error("watch_stop_failed", agency_id=self.agency_id, root=d.root, error=str(exc))
        if policy is not None:
            policy.stop(max(0.05, deadline - time.monotonic()))
        if was_active:
            log.info("agency_suspended", agency_id=self.agency_id)

    def _degraded(self, root: str, reason: str) -> None:
        log.warning("watch_degraded", agency_id=self.agency_id, root=root, reason=reason)
        self.degraded_roots[root] = reason

    # -- status ------------------------------------------------------------------------------
    def watch_stats(self) -> list[dict[str, Any]]:
        with self._mutex:
            return [dict(d.stats(), root=d.root, debounce_ms=round(d.debouncer.debounce_s * 1000))
                    for d in self._drivers]

    def status(self) -> dict[str, Any]:
        watch = self.watch_stats()
        return {
            "locked": self.locked,
            "lockdown": self.lockdown.get(self.agency_id),
            "active": self._active,
            "watch": watch,
            "polling": [w["root"] for w in watch if w.get("mode") == "polling"],
            "degraded_roots": dict(self.degraded_roots),
            "crawl": self.pipeline.crawler.progress(self.agency_id),
            "last_snapshot": self.vault.last(self.agency_id),
            "agent": dict(self.agent.status()) if self.agent is not None else None,
        }
