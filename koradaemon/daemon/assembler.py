"""The daemon: assembles the parts, runs the main loop, stops everything under one deadline.

It owns no behaviour of its own: configuration → index pipeline + agency runtimes + vault +
control server (+ the agent, owned by its agency's runtime). Signal handlers only set flags
(:mod:`koradaemon.daemon.signals`); everything else happens on the main thread, which also feeds
the systemd watchdog, so a hung main loop stops the pings and systemd restarts us.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from .. import gcsettings
from ..audit.lockdown import LockdownRegistry
from ..audit.manager import AuditManager
from ..config import load_config
from ..config_model import Config
from ..control.connection import Timeouts
from ..control.protocol import Peer
from ..control.server import ControlServer, local_operator
from ..control.slots import SlotLimits
from ..errors import ConfigError, KoraError
from ..events import EventBus
from ..index.db import open_db
from ..index.service import IndexPipeline
from ..logsetup import retry_log_file
from ..service.notify import Notifier
from ..service.tokens import TokenStore
from ..service.watchdog_ping import WatchdogPinger
from ..streams.build import build_nats, build_websocket
from ..vault.service import SnapshotService
from .agencies import Agencies
from .operations import HEAVY_OPS, NICE_OPS, Operations
from .reload import restart_only_changes
from .runlock import RunLock
from .secret_ops import agent_secret_env, open_secrets
from .signals import SignalFlags
from .status import status_line

if TYPE_CHECKING:
    from ..vectors.service import VectorService

log = structlog.get_logger(__name__)

STOP_GRACE_S = 1.0  # the whole stop returns within shutdown_timeout_s + this


class Daemon:
    def __init__(self, cfg: Config, *, config_path: Path | None = None, flags: SignalFlags | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.data_root = cfg.data_root
        self.flags = flags or SignalFlags()
        self.notifier = Notifier.from_env()
        self.events = EventBus()
        self.started_at = time.time()
        self.started_mono = time.monotonic()
        self.ready = False
        self.failed: str | None = None
        self.vectors: VectorService | None = None  # the embedding step (vectors.enabled)
        self._stopped = False
        self._steps: list[tuple[str, Callable[[float], None]]] = []  # how to stop what was started, in order

    # -- assembly -------------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.cfg
        if not cfg.data_root.is_dir():  # never created: a typo in --data-root must not start a new one
            raise ConfigError(f"data root {cfg.data_root} does not exist or is not a folder",
                              hint="create it, or fix --data-root")
        self.runlock = RunLock(cfg.data_root)
        self.runlock.acquire()  # before anything is touched: one daemon per data root
        self._on_stop("runlock", lambda d: self.runlock.release())
        self.notifier.status("opening the database")
        self.db_path = cfg.path(cfg.index.database)
        self.db = open_db(self.db_path)
        self._on_stop("db", lambda d: self.db.close())
        self.lockdown = LockdownRegistry(self.db_path)
        self._on_stop("lockdown", lambda d: self.lockdown.close())
        self.audit = AuditManager(
            audit_root=cfg.path(cfg.audit.dir), db_path=self.db_path,
            agency_ids=[a.agency_id for a in cfg.agencies], lockdown=self.lockdown,
            segment_max_bytes=cfg.audit.segment_max_bytes, group_commit_ms=cfg.audit.group_commit_ms,
            group_commit_records=cfg.audit.group_commit_records, full_verify_on_start=cfg.audit.full_verify_on_start,
            on_commit=self.events.on_audit_commit,
        )
        self.notifier.status("verifying audit chains")
        self.audit.open_all()
        self._on_stop("audit", lambda d: self.audit.close(_left(d)))
        self.pipeline = IndexPipeline(self.db_path, cfg.index, cfg.watch, audit=self.audit.append_many,
                                      appended=self.audit.appended_outbox_ids, publish=self.events.publish,
                                      is_locked=self.lockdown.is_locked)
        self.vault = SnapshotService(cfg.vault, cfg.agent, cfg.data_root, audit=self.audit_append,
                                     events=self.events, state_dirs=lambda a: self.agencies.state_dirs(a),
                                     config=lambda: self.cfg,
                                     allowed=lambda a: self.agencies.allowed(a),
                                     on_taken=lambda a: self.agencies.snapshot_taken(a))
        self.secrets = open_secrets(cfg, self.vault.keys)
        self.agencies = Agencies(cfg, pipeline=self.pipeline, vault=self.vault, audit=self.audit,
                                 lockdown=self.lockdown, tokens=TokenStore(cfg.tokens_path()), events=self.events)
        self._attach_agent()
        self.notifier.status("draining the audit outbox")
        self.pipeline.start()
        if cfg.vectors.enabled:  # embeddings follow the writer; off = nothing of numpy/wordllama imported
            from ..vectors.service import start_vectors

            vectors = self.vectors = start_vectors(
                cfg, self.db_path, self.lockdown.is_locked,
                lambda: self.pipeline.initial_sync is None or not self.pipeline.idle())
            self._on_stop("vectors", lambda d: vectors.stop(_left(d)))
        self._on_stop("final_snapshots", self.agencies.final_snapshots)
        self._on_stop("vault", lambda d: self.vault.stop(_left(d)))
        self._on_stop("agencies", self.agencies.stop)
        self._on_stop("pipeline", self.pipeline.stop)
        self._on_stop("watchers", self.agencies.stop_watching)
        self.vault.start()
        self.notifier.status("starting watchers")
        self.agencies.start()
        ops = Operations(self)
        self._on_stop("read connections", lambda d: ops.close())  # runs after the control server's stop
        self.control = ControlServer(
            cfg.socket_path(),
            authenticate=self.agencies.check_token,
            handlers=ops.handlers(),
            on_refusal=ops.on_refusal,
            max_request_bytes=cfg.control.max_request_bytes,
            slots=SlotLimits(cfg.control.preauth_slots, cfg.control.agency_slots, cfg.control.operator_slots),
            timeouts=Timeouts(cfg.control.auth_timeout_s, cfg.control.idle_timeout_s, cfg.control.read_timeout_s),
            backlog=cfg.control.backlog,
            is_operator=self._is_operator,
            is_agency=lambda a: self.agencies.get(a) is not None,
            heavy_ops=HEAVY_OPS,
            nice_ops=NICE_OPS,
            heavy_per_agency=cfg.control.heavy_per_agency,
            heavy_wait_s=cfg.control.heavy_wait_s,
        )
        self.control.start()
        self._on_stop("control", lambda d: self.control.stop(_left(d)))
        for runtime in self.agencies:
            if runtime.agent is not None:
                runtime.agent.control_ready(cfg.socket_path())  # type: ignore[attr-defined]
        self.websocket = build_websocket(cfg, self.events)  # None unless websocket.enabled
        if self.websocket is not None:
            self.websocket.start()
            self._on_stop("websocket", self.websocket.stop)
        self.nats = build_nats(cfg, self.events, self.audit, self.secrets, self.audit_append)  # None unless on
        if self.nats is not None:
            self.nats.start()
            self._on_stop("nats", self.nats.stop)
        # Everything built so far lives as long as the daemon: out of the collector's way, so a
        # full collection during a search scans only what came later.
        gcsettings.settle()
        self.ready = True
        log.info("daemon_ready", data_root=str(cfg.data_root), agencies=self.agencies.ids())

    def _on_stop(self, name: str, fn: Callable[[float], None]) -> None:
        """Register how to stop a part just started; stop runs them newest first."""
        self._steps.insert(0, (name, fn))


    def _is_operator(self, peer: Peer | None) -> bool:
        """Root or the daemon's user, but never the supervised agent's process group."""
        if not local_operator(peer) or peer is None:
            return False
        agents = [r.agent for r in self.agencies if r.agent is not None]
        agent_pid = agents[0].status().get("pid") if agents else None
        if not isinstance(agent_pid, int):
            return True
        try:
            return os.getpgid(peer.pid) != agent_pid  # the agent leads its own process group
        except OSError:
            return False  # gone already: no reserve for it

    def _attach_agent(self) -> None:
        agent = self.cfg.agent
        if not agent.enabled:
            return
        runtime = self.agencies.get(agent.agency_id)
        if runtime is None:
            raise ConfigError(f"agent.agency_id {agent.agency_id!r} is not a declared agency")
        from ..supervisor.build import build_supervisor

        runtime.agent = build_supervisor(self.cfg, audit=self.audit_append, snapshots=self.vault,
                                         secret_env=agent_secret_env(self.cfg, self.secrets))

    # -- what parts ask of the daemon -------------------------------------------------------
    def audit_append(self, agency_id: str, record_type: str, data: dict[str, Any]) -> None:
        self.audit.append(agency_id, record_type, data)

    def threads_alive(self) -> dict[str, bool]:
        out = {**self.pipeline.alive(), "snapshots": self.vault.alive()}
        for name in ("websocket", "nats"):  # the outside streams, when turned on
            part = getattr(self, name, None)
            if part is not None:
                out[name] = part.alive()
        return out

    def streams_status(self) -> dict[str, str]:
        """The outside streams that are on, each with its state (no addresses, no counts)."""
        out: dict[str, str] = {}
        websocket, nats = getattr(self, "websocket", None), getattr(self, "nats", None)  # set as they start
        if websocket is not None:
            out["websocket"] = "running" if websocket.alive() else "stopped"
        if nats is not None:
            out["nats"] = nats.state()
        return out

    # -- main loop --------------------------------------------------------------------------
    def run(self) -> int:
        self.flags.install()  # usually already in place (runner installs them first thing)
        try:
            self.start()
            self.notifier.ready(status_line(self))
            self._loop()
            return 70 if self.failed else 0
        finally:
            self.stop()
            self.flags.restore()

    def _loop(self) -> None:
        pinger = WatchdogPinger(self.notifier, checks=(self._healthy,))
        wd = pinger.interval
        tick = min(0.5, wd) if wd else 0.5
        next_status = 0.0
        while not self.flags.stop.is_set():
            if not self._healthy():
                dead = sorted(k for k, ok in self.threads_alive().items() if not ok)
                self.failed = f"core thread(s) died: {', '.join(dead)}"
                log.critical("daemon_unhealthy", threads=dead, action="stopping; exit 70")
                return
            pinger.tick()  # from the main loop only: if it hangs, systemd's watchdog fires
            self.flags.wake.wait(tick)
            self.flags.wake.clear()
            if self.flags.reload.is_set():
                self.flags.reload.clear()
                self.reload()
            if self.flags.snapshot.is_set():
                self.flags.snapshot.clear()
                self.agencies.request_snapshots("signal")
            self.agencies.tick()
            self.vault.tick()
            retry_log_file()  # lines held while the log file's disk was full
            self.pipeline.note_initial_sync()
            now = time.monotonic()
            if now >= next_status:
                self.notifier.status(status_line(self))
                next_status = now + 2.0
        log.info("daemon_stopping", signal=self.flags.stop_signal)

    def _healthy(self) -> bool:
        return all(self.threads_alive().values())

    def reload(self) -> None:
        """SIGHUP: a new configuration applies whole, or not at all (the running one stays)."""
        self.notifier.reloading()
        try:
            if self.config_path is None:
                raise KoraError("no configuration file to reload")
            new = load_config(self.config_path, data_root=self.cfg.data_root)
            for warning in new.warnings:
                log.warning("config_warning", problem=warning)
            refused = restart_only_changes(self.cfg, new)
            if refused:
                log.error("reload_refused", needs_restart=refused,
                          hint="these settings apply only at start: restart the daemon; nothing was changed")
            else:
                self._apply(new)
        except KoraError as exc:
            log.error("reload_rejected", error=str(exc), hint="the running configuration stays in force")
        except Exception as exc:  # never let a reload take the daemon down
            log.exception("reload_failed", error=str(exc))
        self.notifier.ready(status_line(self))

    def _apply(self, new: Config) -> None:
        if new.log != self.cfg.log:
            from ..logsetup import configure_logging

            configure_logging(level=new.log.level, fmt=new.log.format, file=new.path(new.log.file),
                              rotate_mb=new.log.rotate_mb, keep_days=new.log.keep_days)
            log.info("logging_reconfigured", level=new.log.level, format=new.log.format)
        report = self.agencies.apply(new)
        self.cfg = new
        for agency_id in self.agencies.ids():
            try:
                self.audit_append(agency_id, "config_reload", {"changed": agency_id in report["changed"],
                                                               "added": agency_id in report["added"]})
            except Exception as exc:
                log.error("reload_audit_failed", agency_id=agency_id, error=str(exc))
        log.info("config_reloaded", **report)

    # -- shutdown ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop every started part, newest first, all within ``shutdown_timeout_s`` (+1 s grace)."""
        if self._stopped:
            return
        self._stopped = True
        self.ready = False
        budget = self.cfg.shutdown_timeout_s
        t0 = time.monotonic()
        deadline = t0 + budget
        self.notifier.stopping()
        for name, fn in self._steps:
            try:
                fn(deadline)
            except Exception as exc:
                log.error("stop_step_failed", step=name, error=str(exc))
        log.info("daemon_stopped", seconds=round(time.monotonic() - t0, 3))


def _left(deadline: float) -> float:
    return max(0.05, deadline - time.monotonic())
