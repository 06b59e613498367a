"""The daemon supervising a (fake) agent: restart after kill -9, re-injection from the vault, stops."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import psutil
from conftest import DaemonProc, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_daemon(tmp_path: Path, *extra_args: str, drain_s: float = 2) -> DaemonProc:
    port = free_port()
    command = json.dumps([sys.executable, "-m", "koradaemon.testing.fake_agent", "--port", str(port), *extra_args])
    extra = f"""agent:
  enabled: true
  agency_id: alpha
  command: {command}
  workdir: alpha/work
  state_dir: alpha/state
  health_url: http://127.0.0.1:{port}
  probe_interval_s: 0.1
  probe_timeout_s: 0.5
  startup_timeout_s: 15
  drain_s: {drain_s}
  backoff_initial_s: 0.1
  backoff_max_s: 1
  good_after_s: 0.3
"""
    return DaemonProc(tmp_path, extra=extra)


def kill_daemon(d: DaemonProc) -> None:
    """Test clean-up: kill and reap, so no zombie or unwaited Popen leaks into later tests."""
    if d.proc is not None and d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


def agent_status(d: DaemonProc) -> dict[str, object]:
    st = d.status()
    return dict(st["agent"]) if st else {}


def wait_agent_ready(d: DaemonProc, timeout: float = 20) -> dict[str, object]:
    return wait_for(lambda: (s := agent_status(d)).get("state") == "ready" and s, timeout, 0.05, "agent ready")


def audit_types(d: DaemonProc) -> list[str]:
    return [json.loads(line)["type"] for seg in sorted((d.root / "audit" / "alpha").glob("audit-*.jsonl"))
            for line in seg.read_text().splitlines() if line.strip()]


def test_agent_is_restarted_after_kill9_and_stopped_with_the_daemon(tmp_path: Path) -> None:
    d = agent_daemon(tmp_path)
    try:
        d.start()
        first = wait_agent_ready(d)
        pid = int(first["pid"])  # type: ignore[call-overload]
        os.kill(pid, signal.SIGKILL)
        again = wait_for(lambda: (s := agent_status(d)).get("state") == "ready" and s.get("pid") != pid and s,
                         20, 0.05, "agent restarted")
        assert int(again["restarts"]) >= 1  # type: ignore[call-overload]
        new_pid = int(again["pid"])  # type: ignore[call-overload]
        wait_for(lambda: {"agent_start", "agent_exit"} <= set(audit_types(d)), 10, what="agent audited")
        human = d.cli("status").stdout
        assert "agent: ready" in human
        assert d.stop() == 0
        assert not psutil.pid_exists(new_pid) or psutil.Process(new_pid).status() == psutil.STATUS_ZOMBIE
    finally:
        kill_daemon(d)


def test_unusable_state_is_restored_from_the_vault(tmp_path: Path) -> None:
    d = agent_daemon(tmp_path)
    try:
        d.start()
        wait_agent_ready(d)
        state_file = d.root / "alpha" / "state" / "state.json"
        wait_for(state_file.exists, 10, what="agent wrote its state")
        wait_for(lambda: float(agent_status(d).get("ready_for_s") or 0) >= 0.3, 10, what="known-good")  # type: ignore[arg-type]
        snap = d.client_call("snapshot")["snapshot"]
        assert snap["id"] and snap["agent_good"] is True
        pid = int(agent_status(d)["pid"])  # type: ignore[call-overload]
        state_file.write_text("{corrupt")
        os.kill(pid, signal.SIGKILL)  # the agent comes back, finds its state unusable and exits 78
        st = wait_for(lambda: (s := agent_status(d)).get("state") == "ready" and s.get("last_restore") and s,
                      30, 0.05, "state restored and agent ready")
        assert json.loads(state_file.read_text())["boots"] >= 1
        assert st["last_restore"]
        wait_for(lambda: "restore" in audit_types(d), 10, what="restore audited")
        assert d.stop() == 0
    finally:
        kill_daemon(d)


def test_second_sigint_forces_exit_and_next_start_reaps_the_stale_agent(tmp_path: Path) -> None:
    d = agent_daemon(tmp_path, "--ignore-term", drain_s=30)
    try:
        d.start()
        pid = int(wait_agent_ready(d)["pid"])  # type: ignore[call-overload]
        d.signal(signal.SIGINT)
        wait_for(lambda: any(e.get("event") == "daemon_stopping" for e in d.log_events()), 10, what="stopping")
        t0 = time.monotonic()
        d.signal(signal.SIGINT)
        assert d.proc is not None and d.proc.wait(10) == 130
        assert time.monotonic() - t0 < 5, "the second SIGINT does not wait for the drain budget"
        assert psutil.pid_exists(pid), "the agent ignoring SIGTERM outlived the forced exit"
        # The next daemon gives the stale group its drain budget after SIGTERM, then SIGKILLs it:
        # a short budget now, so the wait below is not a race against the 30 s one used above.
        d.config.write_text(d.config.read_text().replace("drain_s: 30", "drain_s: 1"))
        d.start()  # the new daemon finds the old agent group from its pidfile and ends it
        wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
                 30, 0.05, "stale agent ended")
        d.proc.kill()
        d.proc.wait()
    finally:
        kill_daemon(d)
        if psutil.pid_exists(pid):
            os.kill(pid, signal.SIGKILL)
