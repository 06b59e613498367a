"""The daemon's side of the Session Vault: triggers, the snapshot worker thread, restores.

Triggers: SIGUSR1 and `koradaemon snapshot` (request), the auto-timer and settled
milestones (each agency's :class:`~koradaemon.vault.policy.SnapshotPolicy`), and the final
snapshot before a planned stop. Snapshots run on their own thread so the main loop keeps
feeding the systemd watchdog.
"""

from __future__ import annotations

import builtins
import queue
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from ..config_model import AgentConfig, Config, VaultConfig
from ..confine import ensure_dirs, resolve_client_path
from ..errors import LockdownError, SnapshotError, UsageError
from ..events import EventBus
from ..ioerrors import describe_io_error, is_io_error

if TYPE_CHECKING:
    from .keys import KeyHolder
    from .snapshots import SnapshotStore

log = structlog.get_logger(__name__)

RETRY_FIRST_S = 1.0  # a snapshot that failed for a full disk is tried again after this, doubling ...
RETRY_MAX_S = 60.0  # ... up to this, until it is taken
_WAKE = ("", "")  # queued to make the worker start timing a retry (a failure on a control thread)

AuditFn = Callable[[str, str, dict[str, Any]], object]
StateDirsFn = Callable[[str], "tuple[str, ...] | None"]  # agency_id -> its state dirs (None: unknown agency)


class SnapshotService:
    """The vault's worker: one thread takes queued snapshots; restores; key auto-lock.

    It holds no per-agency policy (that is each :class:`AgencyRuntime`'s) and asks ``allowed``
    right before every snapshot or restore, so nothing runs for an agency in lockdown, even a
    request queued before the lockdown began.
    """

    def __init__(self, vault: VaultConfig, agent: AgentConfig, data_root: Path, *, audit: AuditFn | None,
                 events: EventBus | None, state_dirs: StateDirsFn, config: Callable[[], Config],
                 allowed: Callable[[str], bool] = lambda a: True, on_taken: Callable[[str], None] | None = None
                 ) -> None:
        self.vault, self.agent, self.data_root = vault, agent, data_root
        self.audit = audit
        self.events = events
        self.enabled = vault.enabled
        self._state_dirs = state_dirs
        self._config = config  # the configuration in force (client paths are confined against it)
        self._allowed = allowed
        self._on_taken = on_taken
        self._q: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="kora-snapshots", daemon=True)
        self._last: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.stalled: str | None = None  # why the last snapshot failed when it was I/O ("disk full: ..."), or None
        self._retry: dict[str, str] = {}  # agency -> trigger of a snapshot that failed for I/O, tried again
        self._retry_delay = RETRY_FIRST_S
        self.store: SnapshotStore | None = None
        self.keys: KeyHolder | None = None
        self.agent_health: Callable[[], dict[str, object]] | None = None  # set by the supervisor's builder
        if self.enabled:
            from .keys import KeyHolder, resolve_passphrase_path
            from .snapshots import SnapshotStore

            self.keys = KeyHolder(resolve_passphrase_path(vault.passphrase_file, data_root),
                                  idle_lock_s=vault.idle_lock_s, iterations=vault.kdf_iterations)
            self.store = SnapshotStore(data_root / vault.dir, keys=self.keys, keep_last=vault.keep_last,
                                       audit=self.audit,
                                       exclude=vault.exclude)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive() or not self._thread.ident

    def tick(self) -> None:
        """From the main loop: auto-lock an idle key."""
        if self.keys is not None:
            self.keys.maybe_lock()

    def request(self, agency_id: str, trigger: str) -> None:
        """Queue a snapshot (SIGUSR1, timer, milestone); taken on the worker thread if still allowed."""
        if not self.enabled:
            log.warning("snapshot_skipped", agency_id=agency_id, reason="vault disabled", trigger=trigger)
            return
        self._q.put((agency_id, trigger))

    def stop(self, timeout: float) -> None:
        """Finish the queued snapshots within ``timeout``; what is left is dropped (logged)."""
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join(max(0.0, timeout))
            if self._thread.is_alive():
                log.warning("snapshot_worker_busy_at_stop", queued=self._q.qsize())

    def final(self, agency_ids: list[str], deadline: float) -> None:
        """Before a planned stop: one snapshot per allowed agency with state, while time is left."""
        if not self.enabled:
            return
        for agency_id in agency_ids:
            if time.monotonic() >= deadline:
                log.warning("final_snapshot_skipped", agency_id=agency_id, reason="shutdown budget spent")
                continue
            if self._state_dirs(agency_id):
                self._take(agency_id, "shutdown")

    def _run(self) -> None:
        while True:
            try:
                item = self._q.get(timeout=self._retry_delay if self._retry else None)
            except queue.Empty:  # space may be back: take the snapshots that failed for lack of it
                self._retry_delay = min(RETRY_MAX_S, self._retry_delay * 2)
                for agency_id, trigger in list(self._retry.items()):
                    self._take(agency_id, trigger)
                continue
            if item is None:
                return
            if item != _WAKE:
                self._take(*item)

    # -- operations ---------------------------------------------------------------------
    def _sources(self, agency_id: str) -> dict[str, Path]:
        dirs = self._state_dirs(agency_id)
        if dirs is None:
            raise UsageError(f"unknown agency {agency_id!r}")
        return {f"state{i}": self.data_root / rel for i, rel in enumerate(dirs)}

    def _check_allowed(self, agency_id: str) -> None:
        if not self._allowed(agency_id):
            raise LockdownError(f"agency {agency_id!r} is in lockdown: no snapshot or restore runs",
                                hint=f"see 'koradaemon audit verify --agency {agency_id}'")

    def _take(self, agency_id: str, trigger: str) -> dict[str, Any] | None:
        try:
            return self.create_now(agency_id, trigger)
        except LockdownError:
            self._retry.pop(agency_id, None)
            log.warning("snapshot_skipped", agency_id=agency_id, trigger=trigger, reason="lockdown")
        except Exception as exc:
            if not is_io_error(exc):  # an I/O failure was reported and will be retried (_io_failed)
                self._retry.pop(agency_id, None)
                log.error("snapshot_failed", agency_id=agency_id, trigger=trigger, error=str(exc))
        return None

    def _io_failed(self, agency_id: str, trigger: str, exc: BaseException) -> SnapshotError:
        """A snapshot that failed for a full disk or an I/O error: nothing was kept of it (a snapshot
        is complete or absent); say so, and take it again later until it goes through."""
        reason = describe_io_error(exc, where=False)  # daemon-wide in status: no agency's path in it
        if agency_id not in self._retry:
            self._retry_delay = RETRY_FIRST_S
        self._retry[agency_id] = trigger
        self.stalled = reason
        self._q.put(_WAKE)
        log.error("snapshot_failed", agency_id=agency_id, trigger=trigger, reason=reason,
                  action="no partial snapshot kept; taken again automatically when space returns")
        return SnapshotError(f"snapshot of {agency_id!r} failed: {reason}",
                             hint="it is taken again automatically once space returns")

    def _store(self) -> SnapshotStore:
        if self.store is None:
            raise SnapshotError("the vault is disabled in the configuration", hint="set vault.enabled: true")
        return self.store

    def create_now(self, agency_id: str, trigger: str) -> dict[str, Any]:
        store = self._store()
        self._check_allowed(agency_id)
        sources = self._sources(agency_id)
        t0 = time.monotonic()
        health = self.agent_health
        agent = health() if health is not None and agency_id == self.agent.agency_id else None
        try:
            info = store.create(agency_id, sources, trigger=trigger,
                                extra_state={"state_dirs": list(self._state_dirs(agency_id) or ())}, agent=agent)
        except Exception as exc:
            if is_io_error(exc):
                raise self._io_failed(agency_id, trigger, exc) from exc
            raise
        self._retry.pop(agency_id, None)
        if self.stalled is not None and not self._retry:
            log.warning("snapshots_resumed", was=self.stalled)
            self.stalled = None
        out = _info_dict(info)
        if self._on_taken is not None:
            self._on_taken(agency_id)
        with self._lock:
            self._last[agency_id] = out
        log.info("snapshot_taken", agency_id=agency_id, trigger=trigger, id=out.get("id"),
                 seconds=round(time.monotonic() - t0, 3))
        if self.events is not None:
            self.events.emit(agency_id, "snapshot", out)
        return out

    def list(self, agency_id: str) -> list[dict[str, Any]]:
        if self.store is None:
            return []
        return [_info_dict(i) for i in self.store.list(agency_id)]

    def last(self, agency_id: str) -> dict[str, Any] | None:
        with self._lock:
            if agency_id in self._last:
                return self._last[agency_id]
        if self.store is None:
            return None
        latest = self.store.latest(agency_id)
        return _info_dict(latest) if latest is not None else None

    def restore(self, agency_id: str, snap_id: str | None, target: str | None,
                pause: Callable[[], AbstractContextManager[None]] | None = None) -> dict[str, Any]:
        """Restore every state dir of a snapshot: into place (``pause`` holds the agent) or under ``target``."""
        store = self._store()
        self._check_allowed(agency_id)
        sources = self._sources(agency_id)
        info = store.latest(agency_id) if snap_id is None else store.get(agency_id, snap_id)
        if info is None:
            raise SnapshotError(f"agency {agency_id!r} has no snapshot to restore")
        if target:  # a client's path: symlinks resolved, confined, folders made without following links
            cfg = self._config()
            base = resolve_client_path(cfg, target, what="restore target")
            ensure_dirs(cfg, base)
            for member in sources:
                store.restore(agency_id, info.id, member, base / member, in_place=False)
            return {"restored": info.id, "target": target}
        with (pause() if pause is not None else nullcontext()):
            for member, path in sources.items():
                store.restore(agency_id, info.id, member, path, in_place=True)
        return {"restored": info.id, "in_place": True}

    def known_good_agent_snapshots(self) -> builtins.list[str]:
        """Snapshot ids to re-inject the agent's state from, best first.

        Newest first: those taken while the agent was known-good (health read from the encrypted
        daemon state, not the plain manifest), then those from before health was recorded. Snapshots
        taken while the agent was unhealthy (after its state broke) are never candidates.
        """
        agent = self.agent
        dirs = self._state_dirs(agent.agency_id)
        if self.store is None or not dirs or agent.state_dir not in dirs or not self._allowed(agent.agency_id):
            return []
        member = f"state{dirs.index(agent.state_dir)}"
        good: builtins.list[str] = []
        unknown: builtins.list[str] = []
        for info in reversed(self.store.list(agent.agency_id)):
            if member not in info.members:
                continue
            try:
                health = self.store.agent_health(agent.agency_id, info.id)
            except Exception as exc:  # an unreadable snapshot is no candidate
                log.warning("snapshot_health_unreadable", id=info.id, error=str(exc))
                continue
            if health is None:
                unknown.append(info.id)
            elif health.get("good") is True:
                good.append(info.id)
        return good + unknown

    def restore_good_agent_state(self, attempt: int = 0) -> bool:
        """Level-1 re-injection, attempt ``attempt``: the agent's state dir from the attempt-th candidate
        (never while the agent's agency is in lockdown)."""
        candidates = self.known_good_agent_snapshots()
        if attempt >= len(candidates):
            log.warning("agent_no_good_snapshot", attempt=attempt, candidates=len(candidates))
            return False
        agent = self.agent
        dirs = self._state_dirs(agent.agency_id) or ()
        member = f"state{dirs.index(agent.state_dir)}"
        assert self.store is not None
        self.store.restore(agent.agency_id, candidates[attempt], member, self.data_root / agent.state_dir,
                           in_place=True)
        log.warning("agent_state_reinjected", snapshot=candidates[attempt], attempt=attempt)
        return True

    def vault_status(self) -> dict[str, Any]:
        if self.keys is None:
            return {"enabled": False}
        return {"enabled": True, "locked": self.keys.is_locked, "queued": self._q.qsize()}


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
