"""The agent supervisor: start, probe, stop, restart with backoff, re-inject state after a crash.

One thread runs the loop ``wait -> start -> watch -> finish -> decide``. Every request from other
threads (stop, restart, pause) is a flag under one condition variable that wakes the loop.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import structlog

from ..errors import KoraError, SupervisorError
from .backoff import RestartPolicy
from .child import AgentProcess
from .launch import Launcher
from .modes import AgentModes
from .pidfile import reap_stale
from .probes import Prober
from .reinject import EX_CONFIG, Reinjector, RestoreFn
from .restart import Outcome, plan_restart
from .runbook import STATES, RunBook

log = structlog.get_logger(__name__)

AuditFn = Callable[[str, str, dict[str, object]], None]
PIDFILE_NAME = "agent.pid"

__all__ = ["EX_CONFIG", "STATES", "AuditFn", "RestoreFn", "Supervisor"]


class Supervisor:
    """Keeps one agent process alive and healthy; see ``docs/supervisor.md``."""

    def __init__(
        self,
        *,
        agency_id: str,
        command: Sequence[str],
        workdir: Path,
        state_dir: Path,
        run_dir: Path,
        health_url: str,
        probe_interval_s: float = 5.0,
        probe_timeout_s: float = 2.0,
        hung_after_failures: int = 3,
        startup_timeout_s: float = 60.0,
        drain_s: float = 10.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 120.0,
        healthy_reset_s: float = 600.0,
        crash_loop_failures: int = 5,
        crash_loop_window_s: float = 600.0,
        degraded_retry_s: float = 300.0,
        early_crash_limit: int = 2,
        good_after_s: float = 60.0,
        audit: AuditFn | None = None,
        restore_state: RestoreFn | None = None,
        extra_env: Mapping[str, str] | None = None,
        before_start: Callable[[], Mapping[str, str]] | None = None,
        on_control_ready: Callable[[Path], None] | None = None,
        run_as: tuple[int, int] | None = None,
        secret_env: Callable[[], Mapping[str, str]] | None = None,
        ring_lines: int = 200,
        rng: random.Random | None = None,
    ) -> None:
        self.agency_id = agency_id
        self.command = list(command)
        self.workdir = workdir.resolve()
        self.state_dir = state_dir.resolve()
        self.run_dir = run_dir.resolve()
        self.pidfile = run_dir / PIDFILE_NAME
        self.prober = Prober(health_url, timeout_s=probe_timeout_s)
        self.probe_interval_s = probe_interval_s
        self.hung_after_failures = hung_after_failures
        self.startup_timeout_s = startup_timeout_s
        self.drain_s = drain_s
        self.backoff_initial_s = backoff_initial_s
        self.policy = RestartPolicy(
            initial_s=backoff_initial_s,
            max_s=backoff_max_s,
            healthy_reset_s=healthy_reset_s,
            crash_loop_failures=crash_loop_failures,
            crash_loop_window_s=crash_loop_window_s,
            degraded_retry_s=degraded_retry_s,
            rng=rng,
        )
        self._audit_fn = audit
        self.good_after_s = good_after_s  # ready this long (no crash since): the state is known-good
        self.modes = AgentModes()
        self.reinjector = Reinjector(
            restore_state=restore_state, early_crash_limit=early_crash_limit, audit=self._audit
        )
        self.launcher = Launcher(
            command=self.command, workdir=self.workdir, state_dir=self.state_dir, pidfile=self.pidfile,
            ring_lines=ring_lines, extra_env=dict(extra_env or {}), before_start=before_start,
            secret_env=secret_env, run_as=run_as,
        )
        self._on_control_ready = on_control_ready
        self._ring_lines = ring_lines
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._child: AgentProcess | None = None
        self._book = RunBook()  # state, counters, readiness, last exit: all under self._cv
        self._stop_req = False
        self._restart_req = False
        self._pause_depth = 0
        self._stop_drain_s = drain_s

    # ----------------------------------------------------------------- public API
    def start(self) -> None:
        """Start supervising in a thread (which first ends a stale agent group left by a killed daemon)."""
        if self._thread is not None:
            raise SupervisorError("supervisor already started")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self._cv:
            self._book.state = "starting"
        self._thread = threading.Thread(target=self._run, name=f"supervisor-{self.agency_id}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the agent (SIGTERM, drain, SIGKILL of its group) and the supervisor thread."""
        deadline = time.monotonic() + timeout
        with self._cv:
            self._stop_req = True
            self._stop_drain_s = max(0.0, min(self.drain_s, timeout - 1.0))
            self._cv.notify_all()
        thread = self._thread
        if thread is None:
            return
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.error("supervisor_stop_timeout", timeout=timeout)
            child = self._child
            if child is not None:
                child.kill_now()
            thread.join(0.5)

    def control_ready(self, socket_path: Path) -> None:
        """The control socket is bound: let the agent reach it (its own uid needs group access)."""
        if self._on_control_ready is not None:
            try:
                self._on_control_ready(socket_path)
            except OSError as exc:
                log.error("agent_socket_grant_failed", error=str(exc))

    def request_restart(self) -> None:
        """Restart the agent now (also leaves the degraded state and forgets earlier failures)."""
        with self._cv:
            self._restart_req = True
            self._cv.notify_all()

    @contextlib.contextmanager
    def paused(self, timeout: float | None = None) -> Iterator[None]:
        """Stop the agent for the body (e.g. a restore into its state directory), then start it again."""
        wait_s = timeout if timeout is not None else self.drain_s + 2 * self.prober.timeout_s + 10.0
        with self._cv:
            self._pause_depth += 1
            self._cv.notify_all()
            ok = self._cv.wait_for(self._pause_settled, wait_s)
        try:
            if not ok:
                raise SupervisorError(f"agent did not stop within {wait_s:.1f}s for a pause")
            yield
            self.reinjector.on_ready()  # a state put in place by hand starts a new episode
            self._clear_degraded("operator")  # e.g. an operator's restore: the next start gets a fresh chance
        finally:
            with self._cv:
                self._pause_depth -= 1
                self._cv.notify_all()

    def status(self) -> dict[str, object]:
        """A JSON-ready snapshot of the supervisor's state for ``koradaemon status``."""
        now = time.monotonic()
        with self._cv:
            return self._book.status(agency_id=self.agency_id, child=self._child, degraded=self.policy.degraded,
                                     last_restore=self.reinjector.last_restore, modes=self.modes, now=now)

    def health(self) -> dict[str, object]:
        """The agent's health for a snapshot's manifest: ``good`` when its state is known to work
        (see :meth:`RunBook.health`)."""
        now = time.monotonic()
        with self._cv:
            return self._book.health(good_after_s=self.good_after_s, degraded=self.policy.degraded, now=now)

    def _clear_degraded(self, why: str) -> None:
        with self._cv:
            if not self.policy.degraded:
                return
            self.policy.reset()
        log.info("agent_degraded_cleared", reason=why)
        self._audit("agent_recovered", {"reason": why})

    # ----------------------------------------------------------------- main loop
    def _pause_settled(self) -> bool:
        thread = self._thread
        return self._book.state in ("paused", "stopped") or thread is None or not thread.is_alive()

    def _run(self) -> None:
        delay, reason = 0.0, "initial"
        try:
            # First end a stale agent group left by a killed daemon (its pidfile); done here, not in
            # start(), so a group that ignores SIGTERM does not hold up the daemon's readiness.
            ended = reap_stale(self.pidfile, drain_s=self.drain_s)
            if ended:
                self._audit("agent_exit", {"reason": "stale_group", "processes": ended})
            while (why := self._wait_until_start(delay)) is not None:
                outcome = self._run_once("requested" if why == "requested" else reason)
                if outcome.kind == "stop":
                    break
                delay, reason = self._after_exit(outcome)
        except Exception as exc:  # keep the daemon alive; report in status
            log.exception("supervisor_failed")
            self._book.error = f"{type(exc).__name__}: {exc}"
            child = self._child
            if child is not None:
                child.stop(0.0)
        finally:
            with self._cv:
                self._book.state = "stopped"
                self._child = None
                self._book.next_start_at = None
                self._cv.notify_all()

    def _poke(self) -> None:
        with self._cv:
            self._cv.notify_all()

    def _wait_until_start(self, delay: float) -> str | None:
        """Wait ``delay`` seconds (or while paused); returns why the wait ended, None when asked to stop."""
        with self._cv:
            self._book.next_start_at = time.monotonic() + delay
            while True:
                if self._stop_req:
                    return None
                if self._pause_depth > 0:
                    self._book.state = "paused"
                    self._cv.notify_all()
                    self._cv.wait_for(lambda: self._pause_depth == 0 or self._stop_req)
                    self._book.next_start_at = time.monotonic()
                    continue
                if self._restart_req:
                    self._restart_req = False
                    self.policy.reset()
                    why = "requested"
                    break
                if self._book.next_start_at <= time.monotonic():
                    why = "timer"
                    break
                self._cv.wait(self._book.next_start_at - time.monotonic())
            self._book.next_start_at = None
            self._book.state = "starting"
            return why

    def _run_once(self, reason: str) -> Outcome:
        try:
            child = self.launcher.launch(on_exit=self._poke, on_line=self.modes.on_output)
        except SupervisorError as exc:
            self._book.error = str(exc)
            return Outcome("spawn_failed", None, False)
        with self._cv:
            self._child = child
            self.modes.reset()
            self._book.on_start()
            starts = self._book.starts
        self._audit("agent_start", {"pid": child.pid, "start": starts, "reason": reason})
        return self._watch(child)

    def _watch(self, child: AgentProcess) -> Outcome:
        startup_deadline = time.monotonic() + self.startup_timeout_s
        next_probe = time.monotonic() + min(self.probe_interval_s, 0.05)
        was_ready = False
        while True:
            kind = self._wait_probe_or_event(child, next_probe)
            if kind is None:
                kind, was_ready = self._probe(was_ready, startup_deadline)
                child.descendants.record(child.pid)
                next_probe = time.monotonic() + self.probe_interval_s
            if kind is not None:
                return self._finish(child, kind, was_ready)

    def _wait_probe_or_event(self, child: AgentProcess, next_probe: float) -> str | None:
        with self._cv:
            while True:
                if child.exited():
                    return "exited"
                if self._stop_req:
                    return "stop"
                if self._pause_depth > 0:
                    return "pause"
                if self._restart_req:
                    self._restart_req = False
                    return "restart_requested"
                remaining = next_probe - time.monotonic()
                if remaining <= 0:
                    return None
                self._cv.wait(remaining)

    def _probe(self, was_ready: bool, startup_deadline: float) -> tuple[str | None, bool]:
        """One probe round; returns (end-of-run kind or None, was_ready)."""
        now = time.monotonic()
        live = self.prober.live()
        ready = self.prober.ready() if live.ok else None
        is_ready = ready is not None and ready.ok
        with self._cv:
            if ready is not None:
                self.modes.on_ready_detail(ready.detail)
            if is_ready and not was_ready:
                log.info("agent_ready", pid=self._child.pid if self._child else None)
                self.reinjector.on_ready()
            failures = self._book.on_probe(live_ok=live.ok, is_ready=is_ready, was_ready=was_ready, now=now)
            was_ready = was_ready or is_ready
            since = self._book.ready_since
        if is_ready and since is not None and self.policy.on_healthy(since, now):
            log.info("agent_backoff_reset", healthy_s=round(now - since, 3))
        if is_ready and since is not None and now - since >= self.good_after_s:
            self._clear_degraded("healthy")
        if not was_ready:
            return ("startup_timeout" if now > startup_deadline else None), was_ready
        if failures >= self.hung_after_failures:
            log.warning("agent_hung", failures=failures, error=live.error, status=live.status)
            self._audit("agent_hung", {"pid": self._child.pid if self._child else None, "failures": failures})
            return "hung", was_ready
        return None, was_ready

    def _finish(self, child: AgentProcess, kind: str, was_ready: bool) -> Outcome:
        with self._cv:
            since = self._book.ready_since
            self._book.good_at_stop = (kind == "stop" and since is not None and not self.policy.degraded
                                  and time.monotonic() - since >= self.good_after_s)
        returncode = child.stop(self._stop_drain_s if kind == "stop" else self.drain_s)
        info = child.exit_info(reason=kind, was_ready=was_ready)
        tail = child.tail(self._ring_lines)
        with self._cv:
            self._child = None
            self._book.on_exit(info, tail)
        self._audit("agent_exit", info)
        if kind in ("exited", "hung", "startup_timeout"):
            log.warning("agent_crash", **info, output_tail=tail[-50:])
        else:
            log.info("agent_stopped", **info)
        return Outcome(kind, returncode, was_ready)

    # ----------------------------------------------------------------- decisions
    def _after_exit(self, outcome: Outcome) -> tuple[float, str]:
        """Decide the delay before the next start; runs re-injection level 1 when the state is unusable."""
        if outcome.kind in ("pause", "restart_requested"):
            if outcome.kind == "restart_requested":
                self._audit("agent_restart", {"reason": "requested", "delay_ms": 0, "level": 0})
                with self._cv:
                    self._book.restarts += 1
                    self.policy.reset()
            return 0.0, "resume" if outcome.kind == "pause" else "requested"
        plan = plan_restart(outcome, policy=self.policy, reinjector=self.reinjector,
                            backoff_initial_s=self.backoff_initial_s)
        delay = plan.delay_s
        if plan.newly_degraded:
            log.error("agent_degraded", failures=plan.failures_in_window, retry_s=delay)
            self._audit(
                "agent_degraded",
                {"failures": plan.failures_in_window, "retry_ms": int(delay * 1000), "reason": outcome.kind},
            )
        with self._cv:
            self._book.restarts += 1
            self._book.state = "degraded" if plan.degraded else "backoff"
            self._book.next_start_at = time.monotonic() + delay
        data: dict[str, object] = {
            "reason": outcome.kind,
            "returncode": outcome.returncode,
            "delay_ms": int(delay * 1000),
            "level": plan.level,
            "attempt": plan.attempt,
        }
        self._audit("agent_restart", data)
        # "level" is the logger's own field: the re-injection level goes out as reinject_level
        log.info("agent_restart_scheduled", **{("reinject_level" if k == "level" else k): v for k, v in data.items()})
        return delay, plan.reason

    def _audit(self, record_type: str, data: dict[str, object]) -> None:
        if self._audit_fn is None:
            return
        try:
            self._audit_fn(self.agency_id, record_type, data)
        except KoraError as exc:
            log.error("agent_audit_failed", type=record_type, error=str(exc), code=exc.code)
