"""Helpers the agent starts outside its process group are ended and waited for; its own degraded modes show."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from conftest import wait_for
from test_supervisor_recovery import ready_pid, running
from test_supervisor_support import gone, make_supervisor, set_mode, status_of


def _detached(state_dir: Path, other_than: int | None = None) -> int:
    def read() -> int:
        try:
            pid = int((state_dir / "detached.pid").read_text())
        except (FileNotFoundError, ValueError):
            return 0
        return pid if pid != other_than else 0

    return wait_for(read, 10, what="detached helper started")


def test_helpers_in_their_own_session_are_ended_after_a_crash_and_at_stop(tmp_path: Path) -> None:
    state_dir = tmp_path / "agent" / "state"
    with running(make_supervisor(tmp_path, "--spawn-detached")) as sup:
        first = ready_pid(sup)
        helper = _detached(state_dir)
        assert os.getsid(helper) != os.getsid(first) and os.getpgid(helper) != first  # out of reach of killpg
        wait_for(lambda: status_of(sup)["tracked_processes"] >= 1, 10, what="helper tracked")
        os.kill(first, signal.SIGKILL)
        second = ready_pid(sup, timeout=15, other_than=first)
        wait_for(lambda: gone(helper), 10, what="first helper ended")  # it ignores SIGTERM: SIGKILLed
        helper2 = _detached(state_dir, other_than=helper)
        wait_for(lambda: status_of(sup)["tracked_processes"] >= 1, 10, what="second helper tracked")
        assert not gone(helper2) and second != first
    assert gone(helper2)  # stop() returned only after the helper was gone


def test_status_shows_the_agents_own_degraded_modes_next_to_ready(tmp_path: Path) -> None:
    state_dir = tmp_path / "agent" / "state"
    with running(make_supervisor(tmp_path)) as sup:
        ready_pid(sup)
        assert status_of(sup)["degraded_modes"] == []
        set_mode(state_dir, "slowloop")
        st = wait_for(lambda: (s := status_of(sup))["degraded_modes"] and s, 10, what="event loop mode")
        assert st["state"] == "ready" and st["degraded_modes"] == ["event_loop:event_loop_delay"]
        set_mode(state_dir, "breaker")
        st = wait_for(lambda: "crash_loop_breaker" in (s := status_of(sup))["degraded_modes"] and s, 10,
                      what="breaker mode")
        assert st["state"] == "ready"
        set_mode(state_dir, "breaker-recovered")
        wait_for(lambda: status_of(sup)["degraded_modes"] == [], 10, what="breaker recovered")


def test_a_healthy_period_clears_degraded(tmp_path: Path) -> None:
    from test_supervisor_support import AuditLog

    audit = AuditLog()
    state_dir = tmp_path / "agent" / "state"
    sup = make_supervisor(tmp_path, audit=audit, crash_loop_failures=3, degraded_retry_s=0.3, good_after_s=1.0)
    with running(sup):
        pid = ready_pid(sup)
        for _ in range(3):
            set_mode(state_dir, "crash")
            pid = ready_pid(sup, timeout=15, other_than=pid)
        assert audit.of("agent_degraded")  # three failures in the window: a crash loop
        st = wait_for(lambda: not (s := status_of(sup))["degraded"] and s, 15, what="degraded cleared")
        assert st["state"] == "ready" and float(st["ready_for_s"]) >= 1.0
    assert audit.of("agent_recovered") == [{"reason": "healthy"}]
