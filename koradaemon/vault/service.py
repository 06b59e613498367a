"""The daemon's side of the Session Vault: triggers, the snapshot worker thread, restores.

Triggers: SIGUSR1 and `koradaemon snapshot` (request), the auto-timer and settled
milestones (scheduler), and the final snapshot before a planned stop. Snapshots run
on their own thread so the main loop keeps feeding the systemd watchdog.
"""

from __future__ import annotations

import builtins
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from ..config_model import AgencyConfig, Config
from ..errors import SnapshotError, UsageError
from ..events import EventBus
from ..paths import check_relative

log = structlog.get_logger(__name__)

AuditFn = Callable[[str, str, dict[str, Any]], object]


class SnapshotService:
    def __init__(self, cfg: Config, *, audit: AuditFn | None, events: EventBus | None) -> None:
        self.cfg = cfg
        self.audit = audit
        self.events = events
        self.enabled = cfg.vault.enabled
        self._q: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="kora-snapshots", daemon=True)
        self._last: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._observers: list[Any] = []
        self.store: Any = None
        self.keys: Any = None
        self.scheduler: Any = None
        self.agent_health: Callable[[], dict[str, object]] | None = None  # set by the supervisor's builder
        if self.enabled:
            self._build()

    def _build(self) -> None:
        from .keys import KeyHolder, resolve_passphrase_path
        from .snapshots import SnapshotScheduler, SnapshotStore

        v = self.cfg.vault
        self.keys = KeyHolder(resolve_passphrase_path(v.passphrase_file, self.cfg.data_root),
                              idle_lock_s=v.idle_lock_s, iterations=v.kdf_iterations)
        self.store = SnapshotStore(self.cfg.path(v.dir), keys=self.keys, keep_last=v.keep_last, audit=self.audit,
                                   exclude=v.exclude)
        self.scheduler = SnapshotScheduler(interval_s=v.auto_interval_s, settle_s=v.milestone_settle_s,
                                           agencies=[a.agency_id for a in self.cfg.agencies if a.state_dirs])

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def watch_agency(self, agency: AgencyConfig) -> None:
        """Milestones: a change under an agency's state dirs, once settled, triggers a snapshot."""
        if not self.enabled or not agency.state_dirs or self.scheduler is None:
            return
        if self.cfg.vault.milestone_settle_s <= 0:
            return
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        scheduler = self.scheduler

        class _Changed(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type not in ("opened", "closed_no_write"):
                    scheduler.note_change(agency.agency_id)

        observer = Observer()
        for rel in agency.state_dirs:
            path = self.cfg.path(rel)
            path.mkdir(parents=True, exist_ok=True)
            observer.schedule(_Changed(), str(path), recursive=True)
        observer.daemon = True
        observer.start()
        self._observers.append(observer)

    def tick(self) -> None:
        """Called from the main loop: queue due timer/milestone snapshots, auto-lock an idle key."""
        if not self.enabled:
            return
        for agency_id, trigger in self.scheduler.due():
            if self.cfg.agency(agency_id) is not None:
                self._q.put((agency_id, trigger))
        self.keys.maybe_lock()

    def request_all(self, trigger: str) -> None:
        if not self.enabled:
            log.warning("snapshot_skipped", reason="vault disabled", trigger=trigger)
            return
        for agency in self.cfg.agencies:
            if agency.state_dirs:
                self._q.put((agency.agency_id, trigger))

    def stop(self, timeout: float = 10.0) -> None:
        for obs in self._observers:
            obs.stop()
        for obs in self._observers:
            obs.join(timeout)
        self._observers.clear()
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join(timeout)

    def final(self, timeout: float) -> None:
        """Before a planned stop: finish queued snapshots, then one per agency with state."""
        self.stop(timeout)
        if not self.enabled:
            return
        for agency in self.cfg.agencies:
            if agency.state_dirs:
                self._take(agency.agency_id, "shutdown")

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            self._take(*item)

    # -- operations ---------------------------------------------------------------------
    def _sources(self, agency: AgencyConfig) -> dict[str, Path]:
        return {f"state{i}": self.cfg.path(rel) for i, rel in enumerate(agency.state_dirs)}

    def _take(self, agency_id: str, trigger: str) -> dict[str, Any] | None:
        try:
            return self.create_now(agency_id, trigger)
        except Exception as exc:
            log.error("snapshot_failed", agency_id=agency_id, trigger=trigger, error=str(exc))
            return None

    def create_now(self, agency_id: str, trigger: str) -> dict[str, Any]:
        if not self.enabled:
            raise SnapshotError("the vault is disabled in the configuration", hint="set vault.enabled: true")
        agency = self.cfg.agency(agency_id)
        if agency is None:
            raise UsageError(f"unknown agency {agency_id!r}")
        t0 = time.monotonic()
        health = self.agent_health
        agent = health() if health is not None and agency_id == self.cfg.agent.agency_id else None
        info = self.store.create(agency_id, self._sources(agency), trigger=trigger,
                                 extra_state={"state_dirs": list(agency.state_dirs)}, agent=agent)
        out = _info_dict(info)
        self.scheduler.taken(agency_id)
        with self._lock:
            self._last[agency_id] = out
        log.info("snapshot_taken", agency_id=agency_id, trigger=trigger, id=out.get("id"),
                 seconds=round(time.monotonic() - t0, 3))
        if self.events is not None:
            self.events.publish(agency_id, {"type": "snapshot", **out})
        return out

    def list(self, agency_id: str) -> list[dict[str, Any]]:
        if not self.enabled:
            return []
        return [_info_dict(i) for i in self.store.list(agency_id)]

    def last(self, agency_id: str) -> dict[str, Any] | None:
        with self._lock:
            if agency_id in self._last:
                return self._last[agency_id]
        if not self.enabled:
            return None
        latest = self.store.latest(agency_id)
        return _info_dict(latest) if latest is not None else None

    def restore(self, agency_id: str, snap_id: str | None, target: str | None, supervisor: Any = None
                ) -> dict[str, Any]:
        """Restore every state dir of a snapshot: into place (agent paused) or under ``target``."""
        if not self.enabled:
            raise SnapshotError("the vault is disabled in the configuration")
        agency = self.cfg.agency(agency_id)
        if agency is None:
            raise UsageError(f"unknown agency {agency_id!r}")
        info = self.store.latest(agency_id) if snap_id is None else self.store.get(agency_id, snap_id)
        if info is None:
            raise SnapshotError(f"agency {agency_id!r} has no snapshot to restore")
        sources = self._sources(agency)
        if target:
            base = self.cfg.data_root / check_relative(target, what="target")
            for member in sources:
                self.store.restore(agency_id, info.id, member, base / member, in_place=False)
            return {"restored": info.id, "target": target}
        agent_here = supervisor is not None and self.cfg.agent.agency_id == agency_id
        pause = supervisor.paused() if agent_here else _nullcontext()
        with pause:
            for member, path in sources.items():
                self.store.restore(agency_id, info.id, member, path, in_place=True)
        return {"restored": info.id, "in_place": True}

    def known_good_agent_snapshots(self) -> builtins.list[str]:
        """Snapshot ids to re-inject the agent's state from, best first.

        Newest first: those taken while the agent was known-good (health read from the encrypted
        daemon state, not the plain manifest), then those from before health was recorded. Snapshots
        taken while the agent was unhealthy (after its state broke) are never candidates.
        """
        agent = self.cfg.agent
        agency = self.cfg.agency(agent.agency_id)
        if not self.enabled or agency is None or agent.state_dir not in agency.state_dirs:
            return []
        member = f"state{agency.state_dirs.index(agent.state_dir)}"
        good: builtins.list[str] = []
        unknown: builtins.list[str] = []
        for info in reversed(self.store.list(agency.agency_id)):
            if member not in info.members:
                continue
            try:
                health = self.store.agent_health(agency.agency_id, info.id)
            except Exception as exc:  # an unreadable snapshot is no candidate
                log.warning("snapshot_health_unreadable", id=info.id, error=str(exc))
                continue
            if health is None:
                unknown.append(info.id)
            elif health.get("good") is True:
                good.append(info.id)
        return good + unknown

    def restore_good_agent_state(self, attempt: int = 0) -> bool:
        """Level-1 re-injection, attempt ``attempt``: the agent's state dir from the attempt-th candidate."""
        candidates = self.known_good_agent_snapshots()
        if attempt >= len(candidates):
            log.warning("agent_no_good_snapshot", attempt=attempt, candidates=len(candidates))
            return False
        agent = self.cfg.agent
        agency = self.cfg.agency(agent.agency_id)
        assert agency is not None
        member = f"state{agency.state_dirs.index(agent.state_dir)}"
        self.store.restore(agency.agency_id, candidates[attempt], member, self.cfg.path(agent.state_dir),
                           in_place=True)
        log.warning("agent_state_reinjected", snapshot=candidates[attempt], attempt=attempt)
        return True

    def vault_status(self) -> dict[str, Any]:
        if not self.enabled:
            return {"enabled": False}
        return {"enabled": True, "locked": self.keys.is_locked, "queued": self._q.qsize()}


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _info_dict(info: Any) -> dict[str, Any]:
    if info is None:
        return {}
    if isinstance(info, dict):
        return info
    to_dict = getattr(info, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    import dataclasses

    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(info).items()}
