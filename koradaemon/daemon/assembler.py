"""The daemon: builds the parts in order, runs the main loop, stops them in reverse order.

Signal handlers only set flags (see :mod:`koradaemon.sigflags`); everything else
happens here on the main thread, which also feeds the systemd watchdog, so a
hung main loop stops the pings and systemd restarts us.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import structlog

from ..audit.lockdown import LockdownRegistry
from ..audit.manager import AuditManager
from ..config import load_config
from ..config_model import Config
from ..control.server import ControlServer
from ..errors import KoraError, LockdownError
from ..events import EventBus
from ..index.acknowledger import Acknowledger
from ..index.db import open_db
from ..index.pipeline import Indexer
from ..index.prepare import ChunkParams
from ..index.store import AgencyStore
from ..index.writer import Writer
from ..service.notify import Notifier
from ..service.tokens import TokenStore
from ..service.watchdog_ping import WatchdogPinger
from ..vault.service import SnapshotService
from ..watch.crawler import Crawler
from ..watch.reconcile import reconcile
from ..watch.watchset import WatchSet
from ..watch.workqueue import WorkQueue
from .operations import Operations
from .runlock import RunLock
from .signals import SignalFlags
from .status import status_line

log = structlog.get_logger(__name__)

# The start-up crawl keeps at most this many changes queued ahead of the indexer: memory stays
# flat however many files a root holds (100 k queued changes cost ~40 MB).
CRAWL_HIGH_WATER = 512


class Daemon:
    def __init__(self, cfg: Config, *, config_path: Path | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.flags = SignalFlags()
        self.notifier = Notifier.from_env()
        self.events = EventBus()
        self.started_at = time.time()
        self.started_mono = time.monotonic()
        self.ready = False
        self.degraded_roots: dict[tuple[str, str], str] = {}
        self.initial_sync: dict[str, Any] | None = None
        self.vectors: Any = None  # h-vectors (issue 15): a VectorService when vectors.enabled
        self._stopped = False

    # -- construction -------------------------------------------------------------
    def start(self) -> None:
        cfg = self.cfg
        cfg.data_root.mkdir(parents=True, exist_ok=True)
        self.runlock = RunLock(cfg.data_root)
        self.runlock.acquire()  # before anything is touched: one daemon per data root
        self.notifier.status("opening the database")
        self.db_path = cfg.path(cfg.index.database)
        self.db = open_db(self.db_path)
        self.lockdown = LockdownRegistry(self.db_path)
        self.audit = AuditManager(
            audit_root=cfg.path(cfg.audit.dir),
            db_path=self.db_path,
            agency_ids=[a.agency_id for a in cfg.agencies],
            lockdown=self.lockdown,
            segment_max_bytes=cfg.audit.segment_max_bytes,
            group_commit_ms=cfg.audit.group_commit_ms,
            group_commit_records=cfg.audit.group_commit_records,
            full_verify_on_start=cfg.audit.full_verify_on_start,
        )
        self.notifier.status("verifying audit chains")
        self.audit.open_all()
        self.tokens = TokenStore(cfg.tokens_path())
        for agency in cfg.agencies:
            self.tokens.ensure(agency.agency_id)
        self.work = WorkQueue(maxsize=cfg.watch.queue_max)
        self.acks = Acknowledger(audit=self.audit.append_many, publish=self.events.publish)
        self.writer = Writer(
            self.db_path,
            is_ignored=self._is_ignored,
            on_committed=self.acks.submit,
            batch_files=cfg.index.bulk_batch_files,
            batch_bytes=cfg.index.bulk_batch_bytes,
            optimize_idle_s=cfg.index.optimize_idle_s,
        )
        self.watchset = WatchSet(cfg, self.work, on_degraded=self._on_degraded)
        self.indexer = Indexer(
            db_path=self.db_path,
            work=self.work,
            writer=self.writer,
            root_paths=self.watchset.root_paths(),
            params=ChunkParams(cfg.index.chunk_bytes, cfg.index.overlap_percent, cfg.index.max_file_bytes),
            workers=cfg.index.workers,
            on_rescan=self.schedule_reconcile,
            is_locked=self.lockdown.is_locked,
        )
        self.crawler = Crawler(
            put=self.work.put,
            depth=self.work.depth,
            high_water=max(8, min(CRAWL_HIGH_WATER, cfg.watch.queue_max // 2)),
            is_locked=self.lockdown.is_locked,
        )
        self.acks.start()
        self.writer.start()
        self.indexer.start()
        self.crawler.start()
        if cfg.vectors.enabled:  # h-vectors (issue 15): embeddings follow the writer; off = nothing imported
            from ..vectors.service import start_vectors

            self.vectors = start_vectors(cfg, self.db_path, self.lockdown.is_locked,
                                         lambda: self.initial_sync is None or not self.idle())
        self.snapshots = SnapshotService(cfg, audit=self.audit_append, events=self.events)
        self.snapshots.start()
        self.lockdown.add_listener(self._on_lockdown_change)
        self.notifier.status("starting watchers")
        for agency in cfg.agencies:
            if not self.lockdown.is_locked(agency.agency_id):
                self._start_agency(agency.agency_id)
        self.supervisor = self._build_supervisor()
        if self.supervisor is not None:
            self.supervisor.start()
        self.ops = Operations(self)
        self.control = ControlServer(
            cfg.socket_path(),
            authenticate=self.tokens.check,
            handlers=self.ops.handlers(),
            on_refusal=self.ops.on_refusal,
            max_request_bytes=cfg.control.max_request_bytes,
            max_clients=cfg.control.max_clients,
        )
        self.control.start()
        self.ready = True
        log.info("daemon_ready", data_root=str(cfg.data_root), agencies=[a.agency_id for a in cfg.agencies])

    def _build_supervisor(self) -> Any:
        agent = self.cfg.agent
        if not agent.enabled:
            return None
        from ..supervisor.build import build_supervisor

        return build_supervisor(self.cfg, audit=self.audit_append, snapshots=self.snapshots)

    # -- agencies -------------------------------------------------------------------
    def _start_agency(self, agency_id: str) -> None:
        agency = self.cfg.agency(agency_id)
        if agency is None:
            return
        self.watchset.start_agency(agency)
        for root in agency.roots:
            self.schedule_reconcile(agency_id, root)
        self.snapshots.watch_agency(agency)

    def _is_ignored(self, agency_id: str, root: str, path: str) -> bool:
        rules = self.watchset.rules.get((agency_id, root))
        return rules is not None and rules.is_ignored(path)

    def schedule_reconcile(self, agency_id: str, root: str) -> None:
        agency = self.cfg.agency(agency_id)
        if agency is None or root not in agency.roots:
            return
        rules = self.watchset.rules_for(agency, root)
        root_path = self.cfg.path(root)

        def changes() -> Any:
            self.writer.flush()  # what the index holds, including jobs already on their way
            conn = open_db(self.db_path, migrate=False)
            try:
                known = AgencyStore(conn, agency_id).known_files(root)
            finally:
                conn.close()
            return reconcile(agency_id, root, root_path, rules, known)

        self.crawler.schedule(agency_id, root, changes)

    def _on_lockdown_change(self, agency_id: str, locked: bool) -> None:
        if locked:
            log.error("agency_lockdown", agency_id=agency_id)
            self.watchset.stop_agency(agency_id)
            self.events.publish(agency_id, {"type": "lockdown"})
        else:
            log.warning("agency_unlocked", agency_id=agency_id)
            self._start_agency(agency_id)
            self.events.publish(agency_id, {"type": "unlock"})

    def _on_degraded(self, agency_id: str, root: str, reason: str) -> None:
        self.degraded_roots[(agency_id, root)] = reason

    def idle(self) -> bool:
        """Nothing queued, crawled, chunked, written or waiting for its audit record."""
        work = self.work.stats()
        return (self.crawler.idle and work["depth"] == 0 and work["in_flight"] == 0
                and self.writer.depth() == 0 and self.acks.depth() == 0)

    def audit_append(self, agency_id: str, record_type: str, data: dict[str, Any]) -> None:
        self.audit.append(agency_id, record_type, data)

    def check_unlocked(self, agency_id: str) -> None:
        if self.lockdown.is_locked(agency_id):
            raise LockdownError(
                f"agency {agency_id!r} is in lockdown: its audit chain failed verification",
                hint=f"inspect with 'koradaemon audit verify --agency {agency_id}', then "
                f"'koradaemon audit unlock --agency {agency_id} --reason ...'",
            )

    # -- main loop ------------------------------------------------------------------
    def run(self) -> int:
        self.flags.install()
        try:
            self.start()
            self.notifier.ready(status_line(self))
            self._loop()
            return 0
        finally:
            self.stop()
            self.flags.restore()

    def _loop(self) -> None:
        pinger = WatchdogPinger(self.notifier, checks=(self.writer.alive, self.acks.alive))
        wd = pinger.interval
        tick = min(0.5, wd) if wd else 0.5
        next_status = 0.0
        while not self.flags.stop.is_set():
            pinger.tick()  # from the main loop only: if it hangs, systemd's watchdog fires
            self.flags.wake.wait(tick)
            self.flags.wake.clear()
            if self.flags.reload.is_set():
                self.flags.reload.clear()
                self.reload()
            if self.flags.snapshot.is_set():
                self.flags.snapshot.clear()
                self.snapshots.request_all("signal")
            self.snapshots.tick()
            self._note_initial_sync()
            now = time.monotonic()
            if now >= next_status:
                self.notifier.status(status_line(self))
                next_status = now + 2.0
        log.info("daemon_stopping", signal=self.flags.stop_signal)

    def _note_initial_sync(self) -> None:
        if self.initial_sync is None and self.idle():
            seconds = (self.writer.last_commit or time.monotonic()) - self.started_mono
            nbytes = self.writer.counters.get("bytes", 0)
            self.initial_sync = {"seconds": round(seconds, 3), "files": self.writer.counters.get("indexed", 0),
                                 "bytes": nbytes, "mb_per_s": round(nbytes / 1e6 / seconds, 2) if seconds else 0}
            log.info("initial_sync_done", **self.initial_sync)

    def reload(self) -> None:
        self.notifier.reloading()
        try:
            if self.config_path is None:
                raise KoraError("no configuration file to reload")
            new = load_config(self.config_path, data_root=self.cfg.data_root)
        except KoraError as exc:
            log.error("reload_rejected", error=str(exc), hint="the running configuration stays in force")
            self.notifier.ready(status_line(self))
            return
        from .reload import apply_reload

        apply_reload(self, new)
        self.notifier.ready(status_line(self))

    # -- shutdown -------------------------------------------------------------------
    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        budget = self.cfg.shutdown_timeout_s
        deadline = time.monotonic() + budget
        self.notifier.stopping()

        def left() -> float:
            return max(0.1, deadline - time.monotonic())

        for name, fn in self._stop_steps(left):
            try:
                fn()
            except Exception:
                log.exception("stop_step_failed", step=name)
        log.info("daemon_stopped", seconds=round(budget - (deadline - time.monotonic()), 3))

    def _stop_steps(self, left: Any) -> list[tuple[str, Any]]:
        steps: list[tuple[str, Any]] = []
        if hasattr(self, "control"):
            steps.append(("control", self.control.stop))
        if hasattr(self, "watchset"):
            steps.append(("watchers", self.watchset.stop_all))
        if self.vectors is not None:  # h-vectors (issue 15)
            steps.append(("vectors", lambda: self.vectors.stop(left())))
        if hasattr(self, "crawler"):
            steps.append(("crawler", lambda: self.crawler.stop(left())))
        if hasattr(self, "indexer"):
            steps.append(("drain", lambda: self._drain(left())))
            steps.append(("queue", self.work.stop))
            steps.append(("indexer", lambda: self.indexer.stop(left())))
            steps.append(("writer", lambda: self.writer.stop(left())))
            steps.append(("acks", lambda: self.acks.stop(left())))
        if getattr(self, "supervisor", None) is not None:
            steps.append(("agent", lambda: self.supervisor.stop(left())))
        if hasattr(self, "snapshots"):
            steps.append(("final_snapshot", lambda: self.snapshots.final(left())))
        if hasattr(self, "audit"):
            steps.append(("audit", self.audit.close))
        if hasattr(self, "db"):
            steps.append(("db", self.db.close))
        if hasattr(self, "runlock"):
            steps.append(("runlock", self.runlock.release))
        return steps

    def _drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if not self.work.wait_idle(timeout):
            log.warning("drain_timeout", queued=self.work.depth())
            return
        self.writer.flush(max(0.1, deadline - time.monotonic()))
