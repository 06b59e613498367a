"""Re-injection restores the last known-good snapshot, walking back; operator restores clear `degraded`."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from conftest import DaemonProc, wait_for
from test_daemon_agent import agent_status, free_port, kill_daemon


def _daemon(tmp_path: Path, good_after_s: float) -> DaemonProc:
    port = free_port()
    command = json.dumps([sys.executable, "-m", "koradaemon.testing.fake_agent", "--port", str(port)])
    return DaemonProc(tmp_path, extra=f"""agent:
  enabled: true
  agency_id: alpha
  command: {command}
  workdir: alpha/work
  state_dir: alpha/state
  health_url: http://127.0.0.1:{port}
  probe_interval_s: 0.1
  probe_timeout_s: 0.5
  startup_timeout_s: 15
  drain_s: 2
  backoff_initial_s: 0.1
  backoff_max_s: 1
  degraded_retry_s: 600
  good_after_s: {good_after_s}
""")


def _records(d: DaemonProc, record_type: str) -> list[dict[str, object]]:
    out = []
    for seg in sorted((d.root / "audit" / "alpha").glob("audit-*.jsonl")):
        for line in seg.read_text().splitlines():
            rec = json.loads(line)
            if rec["type"] == record_type:
                out.append(rec["data"])
    return out


def _ready_for(d: DaemonProc, seconds: float) -> None:
    wait_for(lambda: agent_status(d).get("state") == "ready"
             and float(agent_status(d).get("ready_for_s") or 0) >= seconds, 30, 0.05,  # type: ignore[arg-type]
             f"agent ready for {seconds}s")


def _set_mode(state: Path, mode: str) -> None:
    tmp = state / "mode.tmp"
    tmp.write_text(mode)
    os.replace(tmp, state / "mode")


def test_level_1_skips_unhealthy_snapshots_and_walks_back_to_one_that_starts(tmp_path: Path) -> None:
    d = _daemon(tmp_path, good_after_s=0.3)
    try:
        d.start()
        state = d.root / "alpha" / "state"
        _ready_for(d, 0.3)
        a = d.client_call("snapshot")["snapshot"]  # A: good state, agent healthy
        assert a["agent_good"] is True
        (state / "state.json").write_text("{broken")  # the state breaks; the running agent does not notice
        b = d.client_call("snapshot")["snapshot"]  # B: marked good (agent still healthy), yet broken
        assert b["agent_good"] is True
        _set_mode(state, "notready")
        wait_for(lambda: agent_status(d).get("state") == "unhealthy", 10, 0.05, "agent unhealthy")
        c = d.client_call("snapshot")["snapshot"]  # C: taken while the agent is unhealthy: never restored
        assert c["agent_good"] is False
        os.kill(int(agent_status(d)["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
        st = wait_for(lambda: (s := agent_status(d)).get("state") == "ready" and s.get("last_restore")
                      and s["last_restore"]["attempt"] == 1 and s, 60, 0.05, "ready after walking back")
        assert not st["degraded"]
        assert json.loads((state / "state.json").read_text())["version"] == 1
        restored = [r["snapshot"] for r in _records(d, "restore") if "snapshot" in r]
        assert restored == [b["id"], a["id"]]  # newest good first, then the one before; C never
        attempts = [(r["attempt"], r["restored"]) for r in _records(d, "restore") if "attempt" in r]
        assert attempts == [(0, True), (1, True)]
        scheduled = [e for e in d.log_events() if e.get("event") == "agent_restart_scheduled"]
        assert [e["reinject_level"] for e in scheduled if e["reinject_level"] == 1] == [1, 1]
        assert {e["level"] for e in scheduled} == {"info"}  # the logger's severity, no longer overwritten
        assert d.stop() == 0
    finally:
        kill_daemon(d)


def test_no_good_snapshot_degrades_and_an_operator_restore_clears_it(tmp_path: Path) -> None:
    d = _daemon(tmp_path, good_after_s=3600)  # no healthy period can clear `degraded` in this test
    try:
        d.start()
        state = d.root / "alpha" / "state"
        wait_for(lambda: agent_status(d).get("state") == "ready", 30, 0.05, "agent ready")
        wait_for((state / "state.json").exists, 10, what="agent wrote its state")
        n = d.client_call("snapshot")["snapshot"]  # not known-good: ready for far less than an hour
        assert n["agent_good"] is False
        (state / "state.json").write_text("{broken")
        os.kill(int(agent_status(d)["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
        st = wait_for(lambda: (s := agent_status(d)).get("degraded") and s, 30, 0.05, "degraded")
        assert st["last_restore"]["restored"] is False  # the unhealthy snapshot is no candidate
        d.client_call("restore", snapshot=n["id"])  # the operator knows better
        st = wait_for(lambda: (s := agent_status(d)).get("state") == "ready" and s, 30, 0.05, "ready again")
        assert st["degraded"] is False
        assert {"reason": "operator"} in _records(d, "agent_recovered")
        assert d.stop() == 0
    finally:
        kill_daemon(d)
