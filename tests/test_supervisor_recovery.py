"""The supervisor against the real fake agent: restarts, hang detection, re-injection, crash loops."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import wait_for
from test_supervisor_support import AuditLog, copy_restore, gone, make_supervisor, read_state, set_mode, status_of

from koradaemon.supervisor import Supervisor


@contextmanager
def running(sup: Supervisor) -> Iterator[Supervisor]:
    sup.start()
    try:
        yield sup
    finally:
        sup.stop(10)


def ready_pid(sup: Supervisor, timeout: float = 10.0, other_than: int | None = None) -> int:
    def check() -> int:
        st = status_of(sup)
        pid = st["pid"]
        return int(pid) if st["state"] == "ready" and pid is not None and pid != other_than else 0

    return wait_for(check, timeout, what="agent ready")


def test_kill_9_is_restarted_and_ready_within_the_backoff(tmp_path: Path) -> None:
    audit = AuditLog()
    with running(make_supervisor(tmp_path, audit=audit)) as sup:
        first = ready_pid(sup)
        os.kill(first, signal.SIGKILL)
        second = ready_pid(sup, timeout=5.0, other_than=first)
        st = status_of(sup)
    assert second != first and gone(first)
    assert st["restarts"] == 1 and st["starts"] == 2
    assert st["last_exit"]["returncode"] == -signal.SIGKILL and st["last_exit"]["reason"] == "exited"
    restart = audit.of("agent_restart")[0]
    delay_ms = restart["delay_ms"]
    assert restart["level"] == 0 and isinstance(delay_ms, int) and 0 < delay_ms <= 50  # first backoff step
    assert audit.types()[:4] == ["agent_start", "agent_exit", "agent_restart", "agent_start"]
    assert read_state(tmp_path / "agent" / "state")["boots"] == 2  # level 0: same state directory
    assert gone(second)


def test_hung_agent_is_detected_after_three_failed_probes_and_restarted(tmp_path: Path) -> None:
    audit = AuditLog()
    with running(make_supervisor(tmp_path, audit=audit)) as sup:
        first = ready_pid(sup)
        os.kill(first, signal.SIGUSR1)  # fake agent stops answering probes but keeps running
        second = ready_pid(sup, timeout=10.0, other_than=first)
    hung = audit.of("agent_hung")
    assert hung == [{"pid": first, "failures": 3}]
    exit_ = audit.of("agent_exit")[0]
    assert exit_["reason"] == "hung" and exit_["returncode"] == 0  # SIGTERM drained it cleanly
    assert gone(first) and gone(second)


def test_corrupt_state_exit_78_restores_snapshot_then_ready(tmp_path: Path) -> None:
    audit = AuditLog()
    state_dir = tmp_path / "agent" / "state"
    good = tmp_path / "snapshot"
    calls: list[str] = []
    sup = make_supervisor(tmp_path, audit=audit, restore_state=copy_restore(good, state_dir, calls))
    with running(sup):
        first = ready_pid(sup)
        shutil.copytree(state_dir, good)  # "snapshot" of a good state
        set_mode(state_dir, "corrupt")  # garble state.json, then crash
        second = ready_pid(sup, timeout=10.0, other_than=first)
        st = status_of(sup)
    assert calls == ["restore"]
    codes = [e["returncode"] for e in audit.of("agent_exit")]
    assert codes[codes.index(78) - 1] == 3  # crashed after garbling its state, then refused to start
    assert audit.of("restore") == [{"restored": True, "trigger": "exit_78", "target": "agent_state", "attempt": 0}]
    levels = [r["level"] for r in audit.of("agent_restart")]
    assert levels[codes.index(78)] == 1 and levels.count(1) == 1
    assert st["last_restore"]["restored"] is True and not st["degraded"]
    assert read_state(state_dir)["version"] == 1 and second != first


def test_repeated_exit_78_without_cure_goes_degraded(tmp_path: Path) -> None:
    audit = AuditLog()
    state_dir = tmp_path / "agent" / "state"
    state_dir.mkdir(parents=True)
    (state_dir / "state.json").write_text("not json", encoding="utf-8")
    calls: list[str] = []

    def restore_nothing(attempt: int) -> bool:
        calls.append("restore")
        return False  # no snapshot available

    with running(make_supervisor(tmp_path, audit=audit, restore_state=restore_nothing)) as sup:
        wait_for(lambda: status_of(sup)["state"] == "degraded", 10, what="degraded")
        st = status_of(sup)
    assert calls == ["restore"]  # exit 78 is not retried blindly
    assert st["degraded"] and st["starts"] == 1 and st["next_start_in_s"] > 30
    assert st["last_exit"]["returncode"] == 78
    assert any("unusable state" in line for line in st["output_tail"])
    assert audit.of("agent_degraded")[0]["reason"] == "exited"


def test_crash_before_ready_twice_triggers_level_1(tmp_path: Path) -> None:
    audit = AuditLog()
    state_dir = tmp_path / "agent" / "state"
    calls: list[str] = []

    def restore(attempt: int) -> bool:
        calls.append("restore")
        (state_dir / "state.json").write_text('{"version": 1, "boots": 0}', encoding="utf-8")
        return True

    sup = make_supervisor(tmp_path, "--ready-after", "30", "--crash-after", "0.1", audit=audit, restore_state=restore)
    with running(sup):
        wait_for(lambda: calls, 10, what="level-1 restore")
        wait_for(lambda: status_of(sup)["starts"] >= 3, 10, what="start after restore")
    assert audit.of("restore")[0]["trigger"] == "crash_before_ready"
    assert [r["level"] for r in audit.of("agent_restart")][:2] == [0, 1]


def test_crash_loop_is_degraded_in_status_with_slow_retries(tmp_path: Path) -> None:
    audit = AuditLog()
    sup = make_supervisor(tmp_path, "--crash-after", "0.2", audit=audit, crash_loop_failures=3)
    with running(sup):
        wait_for(lambda: status_of(sup)["state"] == "degraded", 15, what="degraded")
        st = status_of(sup)
        assert st["pid"] is None and st["next_start_in_s"] > 30
        sup.request_restart()  # operator override: start now, failures forgotten
        wait_for(lambda: status_of(sup)["starts"] == 4, 5, what="restart on request")
        assert not status_of(sup)["degraded"]
    assert st["degraded"] and st["restarts"] == 3 and st["starts"] == 3
    assert len(audit.of("agent_degraded")) == 1
    assert audit.of("agent_degraded")[0]["failures"] == 3


def test_paused_stops_the_agent_for_the_body_then_starts_it(tmp_path: Path) -> None:
    audit = AuditLog()
    state_dir = tmp_path / "agent" / "state"
    with running(make_supervisor(tmp_path, audit=audit)) as sup:
        first = ready_pid(sup)
        with sup.paused():
            assert gone(first)
            assert status_of(sup)["state"] == "paused"
            (state_dir / "restored.marker").write_text("x", encoding="utf-8")
        second = ready_pid(sup, other_than=first)
    assert audit.of("agent_exit")[0]["reason"] == "pause"
    assert (state_dir / "restored.marker").exists() and gone(second)
    assert read_state(state_dir)["clean_shutdown"] is True


def test_request_restart_of_a_ready_agent(tmp_path: Path) -> None:
    audit = AuditLog()
    with running(make_supervisor(tmp_path, audit=audit)) as sup:
        first = ready_pid(sup)
        sup.request_restart()
        ready_pid(sup, other_than=first)
    assert audit.of("agent_restart")[0] == {"reason": "requested", "delay_ms": 0, "level": 0}
