"""Process hygiene: scrubbed environment, whole-group stop, SIGKILL escalation, stale groups, probes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
from conftest import wait_for
from test_supervisor_support import (
    FAST,
    AuditLog,
    agent_command,
    free_port,
    gone,
    make_supervisor,
    set_mode,
    status_of,
)

from koradaemon.errors import AuditError, ConfigError
from koradaemon.supervisor import GroupRecord, Prober, agent_env, reap_stale
from koradaemon.supervisor.pidfile import read_record

SERVICE_ENV = {
    "NOTIFY_SOCKET": "@sd",
    "WATCHDOG_USEC": "5000000",
    "WATCHDOG_PID": "1",
    "INVOCATION_ID": "abc",
    "JOURNAL_STREAM": "8:1",
    "LISTEN_FDS": "1",
    "LISTEN_PID": "1",
    "LISTEN_FDNAMES": "ctl",
    "CREDENTIALS_DIRECTORY": "creds",
    "MAINPID": "1",
}


def test_agent_env_scrubs_service_manager_and_sets_openclaw(tmp_path: Path) -> None:
    base = {"PATH": "bin", "HOME": "home", "OPENCLAW_STATE_DIR": "elsewhere", **SERVICE_ENV}
    env = agent_env(base, state_dir=tmp_path, extra={"EXTRA": "1", "OPENCLAW_NO_RESPAWN": "0"})
    assert env == {
        "PATH": "bin",
        "HOME": "home",
        "EXTRA": "1",
        "OPENCLAW_STATE_DIR": str(tmp_path),
        "OPENCLAW_NO_RESPAWN": "1",
        "OPENCLAW_DISABLE_BONJOUR": "1",
    }


def test_agent_sees_scrubbed_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SERVICE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KORA_KEEP_OUT", "secret")
    sup = make_supervisor(tmp_path, extra_env={"AGENT_FLAG": "on"})
    sup.start()
    try:
        wait_for(lambda: status_of(sup)["state"] == "ready", 10, what="ready")
        env = json.loads((tmp_path / "agent" / "state" / "env.json").read_text(encoding="utf-8"))
    finally:
        sup.stop(10)
    assert not set(SERVICE_ENV) & set(env)
    assert "KORA_KEEP_OUT" not in env
    assert env["AGENT_FLAG"] == "on" and env["OPENCLAW_NO_RESPAWN"] == "1" and env["OPENCLAW_DISABLE_BONJOUR"] == "1"
    assert Path(env["OPENCLAW_STATE_DIR"]) == (tmp_path / "agent" / "state").resolve()


def test_stop_leaves_no_process_of_the_group(tmp_path: Path) -> None:
    audit = AuditLog()
    sup = make_supervisor(tmp_path, "--spawn-grandchild", audit=audit)
    sup.start()
    try:
        wait_for(lambda: status_of(sup)["state"] == "ready", 10, what="ready")
        pid = int(status_of(sup)["pid"])
        grandchild = int((tmp_path / "agent" / "state" / "grandchild.pid").read_text(encoding="utf-8"))
        assert os.getpgid(grandchild) == pid  # same group, its own session
        assert os.getsid(pid) == pid
        assert (tmp_path / "run" / "agent.pid").exists()
    finally:
        sup.stop(10)
    assert gone(pid) and gone(grandchild)  # the grandchild ignores SIGTERM: SIGKILL of the group ended it
    assert not (tmp_path / "run" / "agent.pid").exists()
    assert not [c for c in psutil.Process().children(recursive=True) if "fake_agent" in " ".join(c.cmdline())]
    assert status_of(sup)["state"] == "stopped"
    assert audit.of("agent_exit")[-1]["reason"] == "stop"


def test_agent_ignoring_sigterm_is_killed_after_drain(tmp_path: Path) -> None:
    sup = make_supervisor(tmp_path, "--ignore-term", drain_s=0.3)
    sup.start()
    wait_for(lambda: status_of(sup)["state"] == "ready", 10, what="ready")
    pid = int(status_of(sup)["pid"])
    sup.stop(10)
    assert gone(pid)
    assert status_of(sup)["last_exit"]["returncode"] == -signal.SIGKILL


_DAEMON = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from koradaemon.supervisor import Supervisor
    port, root = int(sys.argv[1]), Path(sys.argv[2])
    Supervisor(agency_id="acme", workdir=root / "agent", state_dir=root / "agent" / "state", run_dir=root / "run",
               command=[sys.executable, "-m", "koradaemon.testing.fake_agent", "--port", str(port),
                        "--spawn-grandchild"],
               health_url=f"http://127.0.0.1:{port}", probe_interval_s=0.05, probe_timeout_s=0.3).start()
    threading.Event().wait()
    """
)


def test_stale_group_of_a_killed_daemon_is_ended_on_restart(tmp_path: Path) -> None:
    port = free_port()
    daemon = subprocess.Popen(
        [sys.executable, "-c", _DAEMON, str(port), str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        gc_file = tmp_path / "agent" / "state" / "grandchild.pid"
        record = wait_for(lambda: gc_file.exists() and read_record(tmp_path / "run" / "agent.pid"), 15, what="agent")
        assert isinstance(record, GroupRecord)
        grandchild = int(wait_for(lambda: gc_file.read_text(encoding="utf-8"), 5, what="grandchild pid"))
    finally:
        daemon.kill()  # kill -9 the "daemon": its agent group is orphaned
        daemon.wait()
    assert not gone(record.pid) and not gone(grandchild)
    audit = AuditLog()
    sup = make_supervisor(tmp_path, audit=audit)
    sup.start()  # its thread finds the recorded group, checks its create_time, ends it
    try:
        wait_for(lambda: gone(record.pid) and gone(grandchild), 15, what="stale group ended")
        wait_for(lambda: status_of(sup)["state"] == "ready", 10, what="new agent ready")
    finally:
        sup.stop(10)
    assert audit.records[0] == ("acme", "agent_exit", {"reason": "stale_group", "processes": 2})


def test_recycled_pid_in_a_stale_record_is_left_alone(tmp_path: Path) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        pidfile = tmp_path / "agent.pid"
        created = psutil.Process(bystander.pid).create_time()
        pidfile.write_text(
            json.dumps({"pid": bystander.pid, "pgid": bystander.pid, "create_time": created - 100, "argv0": "x"}),
            encoding="utf-8",
        )
        assert reap_stale(pidfile, drain_s=0.1) == 0
        assert bystander.poll() is None and not pidfile.exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_startup_timeout_counts_as_failure(tmp_path: Path) -> None:
    audit = AuditLog()
    sup = make_supervisor(tmp_path, "--ready-after", "60", audit=audit, startup_timeout_s=0.5)
    sup.start()
    try:
        wait_for(lambda: audit.of("agent_restart"), 10, what="restart")
    finally:
        sup.stop(10)
    assert audit.of("agent_exit")[0]["reason"] == "startup_timeout"
    assert audit.of("agent_exit")[0]["was_ready"] is False


def test_not_ready_after_ready_is_unhealthy_but_not_restarted(tmp_path: Path) -> None:
    sup = make_supervisor(tmp_path)
    sup.start()
    try:
        wait_for(lambda: status_of(sup)["state"] == "ready", 10, what="ready")
        pid = status_of(sup)["pid"]
        set_mode(tmp_path / "agent" / "state", "notready")
        wait_for(lambda: status_of(sup)["state"] == "unhealthy", 5, what="unhealthy")
        (tmp_path / "agent" / "state" / "mode").unlink()
        wait_for(lambda: status_of(sup)["state"] == "ready", 5, what="ready again")
        assert status_of(sup)["pid"] == pid and status_of(sup)["starts"] == 1
    finally:
        sup.stop(10)


def test_missing_command_is_a_spawn_failure_with_backoff(tmp_path: Path) -> None:
    from koradaemon.supervisor import Supervisor

    sup = Supervisor(
        agency_id="acme",
        command=["./no-such-agent"],
        workdir=tmp_path / "agent",
        state_dir=tmp_path / "state",
        run_dir=tmp_path / "run",
        health_url=f"http://127.0.0.1:{free_port()}",
        **{**FAST, "crash_loop_failures": 3},
    )
    sup.start()
    try:
        wait_for(lambda: status_of(sup)["state"] == "degraded", 10, what="degraded")
        st = status_of(sup)
    finally:
        sup.stop(10)
    assert st["starts"] == 0 and "no-such-agent" in str(st["error"])
    assert st["last_restore"] is None


def test_failing_audit_does_not_stop_supervision(tmp_path: Path) -> None:
    def broken_audit(agency_id: str, record_type: str, data: dict[str, object]) -> None:
        raise AuditError("disk full")

    sup = make_supervisor(tmp_path)
    sup._audit_fn = broken_audit
    sup.start()
    try:
        wait_for(lambda: status_of(sup)["state"] == "ready", 10, what="ready")
    finally:
        sup.stop(10)
    assert status_of(sup)["error"] is None


def test_prober_refuses_non_loopback_and_reports_errors() -> None:
    with pytest.raises(ConfigError):
        Prober("http://192.0.2.1:80", timeout_s=0.1)
    with pytest.raises(ConfigError):
        Prober("https://127.0.0.1:1", timeout_s=0.1)
    result = Prober(f"http://127.0.0.1:{free_port()}", timeout_s=0.2).live()
    assert not result.ok and result.error and "Connection" in result.error


def test_fake_agent_command_is_runnable_as_a_module() -> None:
    out = subprocess.run([*agent_command(0), "--help"], capture_output=True, text=True, check=True, timeout=30)
    assert "--crash-after" in out.stdout
