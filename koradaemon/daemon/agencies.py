"""The set of agency runtimes: built from the configuration, changed by SIGHUP, stopped together."""

from __future__ import annotations

import time
from collections.abc import Iterator

import structlog

from ..audit.lockdown import LockdownRegistry
from ..audit.manager import AuditManager
from ..config_model import Config
from ..errors import UsageError
from ..events import EventBus
from ..index.service import IndexPipeline
from ..service.tokens import TokenStore
from ..vault.service import SnapshotService
from .runtime import AgencyRuntime

log = structlog.get_logger(__name__)


class Agencies:
    def __init__(self, cfg: Config, *, pipeline: IndexPipeline, vault: SnapshotService, audit: AuditManager,
                 lockdown: LockdownRegistry, tokens: TokenStore, events: EventBus) -> None:
        self.cfg = cfg
        self.pipeline, self.vault, self.audit = pipeline, vault, audit
        self.lockdown, self.tokens, self.events = lockdown, tokens, events
        self._runtimes: dict[str, AgencyRuntime] = {a.agency_id: self._build(cfg, a.agency_id) for a in cfg.agencies}
        lockdown.add_listener(self._on_lockdown)

    def _build(self, cfg: Config, agency_id: str) -> AgencyRuntime:
        agency = cfg.agency(agency_id)
        assert agency is not None
        return AgencyRuntime(cfg, agency, pipeline=self.pipeline, vault=self.vault, lockdown=self.lockdown,
                             audit=self.audit, events=self.events)

    # -- lookup ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[AgencyRuntime]:
        return iter(list(self._runtimes.values()))

    def ids(self) -> list[str]:
        return list(self._runtimes)

    def get(self, agency_id: str) -> AgencyRuntime | None:
        return self._runtimes.get(agency_id)

    def require(self, agency_id: str) -> AgencyRuntime:
        runtime = self._runtimes.get(agency_id)
        if runtime is None:
            raise UsageError(f"unknown agency {agency_id!r}", hint="see 'agencies' in the configuration")
        return runtime

    def state_dirs(self, agency_id: str) -> tuple[str, ...] | None:
        runtime = self._runtimes.get(agency_id)
        return None if runtime is None else tuple(runtime.agency.state_dirs)

    def allowed(self, agency_id: str) -> bool:
        """Automatic and requested actions may run: the agency exists and is not in lockdown."""
        return agency_id in self._runtimes and not self.lockdown.is_locked(agency_id)

    def check_token(self, agency_id: str, token: str) -> bool:
        """A token opens only a configured agency (a removed agency's token stops working at once)."""
        return agency_id in self._runtimes and self.tokens.check(agency_id, token)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        for agency_id in self._runtimes:
            self.tokens.ensure(agency_id)
        for runtime in self:
            runtime.start()

    def tick(self) -> None:
        for runtime in self:
            runtime.tick()

    def request_snapshots(self, trigger: str) -> None:
        for runtime in self:
            runtime.request_snapshot(trigger)

    def snapshot_taken(self, agency_id: str) -> None:
        runtime = self._runtimes.get(agency_id)
        if runtime is not None:
            runtime.snapshot_taken()

    def stop_watching(self, deadline: float) -> None:
        for runtime in self:
            runtime.stop_watching(deadline)

    def stop(self, deadline: float) -> None:
        for runtime in self:
            try:
                runtime.stop(deadline)
            except Exception as exc:
                log.error("agency_stop_failed", agency_id=runtime.agency_id, error=str(exc))

    def final_snapshots(self, deadline: float) -> None:
        """Before a planned stop: a snapshot of each agency that is allowed to take one."""
        self.vault.final([r.agency_id for r in self if not r.locked and r.agency.state_dirs], deadline)

    def _on_lockdown(self, agency_id: str, locked: bool) -> None:
        runtime = self._runtimes.get(agency_id)
        if runtime is not None:
            runtime.on_lockdown(locked)

    # -- reload -------------------------------------------------------------------------------
    def apply(self, new: Config) -> dict[str, list[str]]:
        """Add, remove and reconfigure agencies live (the caller has refused restart-only changes)."""
        old_ids, new_ids = set(self._runtimes), {a.agency_id for a in new.agencies}
        removed, added = sorted(old_ids - new_ids), sorted(new_ids - old_ids)
        for agency_id in removed:
            runtime = self._runtimes.pop(agency_id)
            runtime.stop(time.monotonic() + 10.0)
            self.pipeline.detach(agency_id)
            self.audit.remove_agency(agency_id)
            log.warning("agency_removed", agency_id=agency_id, hint="its index, audit log and snapshots are kept")
        changed: list[str] = []
        for runtime in self:
            agency = new.agency(runtime.agency_id)
            assert agency is not None
            if runtime.apply(new, agency):
                changed.append(runtime.agency_id)
        self.cfg = new
        for agency_id in added:
            self.audit.add_agency(agency_id)
            self.tokens.ensure(agency_id)
            runtime = self._build(new, agency_id)
            self._runtimes[agency_id] = runtime
            runtime.start()
            log.info("agency_added", agency_id=agency_id)
        return {"added": added, "removed": removed, "changed": sorted(changed)}
