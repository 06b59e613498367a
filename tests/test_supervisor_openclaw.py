"""Opt-in: the supervisor against the real OpenClaw gateway (install it with ``scripts/install-openclaw``).

Skipped unless the gateway is found at ``$KORA_OPENCLAW_BIN`` or under the install prefix
(``$KORA_OPENCLAW_PREFIX``, default ``~/.local/share/koradaemon/openclaw``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest
from agent_helpers import stop_or_kill
from conftest import DaemonProc, wait_for
from test_supervisor_support import AuditLog, free_port, gone, status_of

from koradaemon.supervisor import Supervisor


def openclaw_bin() -> Path | None:
    explicit = os.environ.get("KORA_OPENCLAW_BIN")
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    prefix = Path(os.environ.get("KORA_OPENCLAW_PREFIX", Path.home() / ".local/share/koradaemon/openclaw"))
    candidate = prefix / "bin" / "openclaw"
    return candidate if candidate.is_file() else None


OPENCLAW = openclaw_bin()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(OPENCLAW is None, reason="OpenClaw gateway not installed (scripts/install-openclaw)"),
]


def group_of(pid: int) -> list[int]:
    return [p.pid for p in psutil.process_iter() if _pgid(p.pid) == pid]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


@pytest.mark.timeout(300)
def test_real_gateway_is_supervised_restarted_and_stopped(tmp_path: Path) -> None:
    assert OPENCLAW is not None
    port = free_port()
    audit = AuditLog()
    home = tmp_path / "home"
    home.mkdir()
    sup = Supervisor(
        agency_id="acme",
        command=[str(OPENCLAW), "gateway", "run", "--bind", "loopback", "--port", str(port), "--allow-unconfigured"],
        workdir=tmp_path / "agent",
        state_dir=tmp_path / "agent" / "state",
        run_dir=tmp_path / "run",
        health_url=f"http://127.0.0.1:{port}",
        probe_interval_s=0.5,
        probe_timeout_s=3.0,
        startup_timeout_s=120.0,
        drain_s=15.0,
        backoff_initial_s=0.2,
        extra_env={"HOME": str(home)},
        audit=audit,
    )
    sup.start()
    try:
        wait_for(lambda: status_of(sup)["state"] == "ready", 150, interval=0.2, what="gateway ready")
        first = int(status_of(sup)["pid"])
        members = group_of(first)
        helpers = wait_for(lambda: [p.pid for p in psutil.Process(first).children(recursive=True)
                                    if _pgid(p.pid) != first], 60, 0.5, "a helper outside the group (spawn broker)")
        wait_for(lambda: status_of(sup)["tracked_processes"] >= len(helpers), 30, 0.2, "helpers tracked")
        assert (tmp_path / "agent" / "state").is_dir()
        os.kill(first, signal.SIGKILL)
        wait_for(
            lambda: status_of(sup)["state"] == "ready" and status_of(sup)["pid"] != first,
            150,
            interval=0.2,
            what="gateway ready after kill -9",
        )
        assert all(gone(p) for p in members)  # the rest of the killed gateway's group was ended too
        assert all(gone(p) for p in helpers)  # and its helpers in their own session (the spawn broker)
        second = int(status_of(sup)["pid"])
        members = group_of(second)
    finally:
        sup.stop(30)
    assert all(gone(p) for p in members)
    assert audit.of("agent_exit")[-1]["reason"] == "stop"
    assert audit.of("agent_exit")[-1]["returncode"] == 0  # SIGTERM: the gateway drained and exited cleanly


def gateway_daemon(tmp_path: Path, port: int) -> DaemonProc:
    """A daemon (not started) that supervises a real `openclaw gateway` for agency alpha on ``port``."""
    command = json.dumps([str(OPENCLAW), "gateway", "run", "--bind", "loopback"])
    return DaemonProc(tmp_path, extra=f"""agent:
  enabled: true
  agency_id: alpha
  command: {command}
  workdir: agent
  state_dir: alpha/state
  health_url: http://127.0.0.1:{port}
  probe_interval_s: 0.5
  probe_timeout_s: 3
  startup_timeout_s: 240
  drain_s: 15
""")


@pytest.mark.timeout(600)
def test_daemon_brings_a_fresh_gateway_to_ready_with_its_memory_as_an_mcp_server(tmp_path: Path) -> None:
    """No --allow-unconfigured: the daemon seeds the config and registers `koradaemon mcp` in it."""
    assert OPENCLAW is not None
    port = free_port()
    d = gateway_daemon(tmp_path, port)
    (tmp_path / "alpha" / "notes" / "memo.md").write_text("the kora zebracorn memo\n")
    state = tmp_path / "alpha" / "state"
    d.start()
    try:
        wait_for(lambda: (d.status() or {}).get("agent", {}).get("state") == "ready", 300, 0.5, "gateway ready")
        doc = json.loads((state / "openclaw.json").read_text())
        assert doc["gateway"]["mode"] == "local" and len(doc["gateway"]["auth"]["token"]) >= 32
        assert doc["mcp"]["servers"]["koradaemon"]["args"][:4] == ["-m", "koradaemon", "mcp", "--agency"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KORA_")}
        env.update(OPENCLAW_STATE_DIR=str(state), HOME=str(tmp_path / "agent" / "home"))
        probe = subprocess.run([str(OPENCLAW), "mcp", "probe", "koradaemon", "--json"], env=env,
                               capture_output=True, text=True, timeout=240)
        assert probe.returncode == 0, probe.stdout[-2000:] + probe.stderr[-2000:]
        report = json.loads(probe.stdout[probe.stdout.index("{"):])
        assert {"koradaemon__search", "koradaemon__read", "koradaemon__status"} <= set(report["tools"])
        doctor = subprocess.run([str(OPENCLAW), "mcp", "doctor", "--probe", "--json"], env=env,
                                capture_output=True, text=True, timeout=240)
        assert doctor.returncode == 0, doctor.stdout[-2000:] + doctor.stderr[-2000:]
        assert json.loads(doctor.stdout[doctor.stdout.index("{"):])["ok"] is True
        assert d.stop(60) == 0
    finally:
        if d.proc is not None and d.proc.poll() is None:
            stop_or_kill(d)  # SIGTERM first: a SIGKILLed daemon leaves its agent behind


@pytest.mark.timeout(600)
def test_scripts_run_with_the_agent_brings_a_fresh_gateway_to_ready(tmp_path: Path) -> None:
    """`KORA_AGENT=1 scripts/run`, as docs/supervisor.md says, on a fresh data root."""
    from koradaemon.control.client import ControlClient

    assert OPENCLAW is not None
    repo = Path(__file__).resolve().parent.parent
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KORA_", "NOTIFY_SOCKET"))}
    env.update(KORA_AGENT="1", KORA_DATA_ROOT=str(data), KORA_OPENCLAW_BIN=str(OPENCLAW))
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(["bash", str(repo / "scripts" / "run")], cwd=repo, env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()

    def agent_state() -> str:
        assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
        try:
            token = (data / "run" / "tokens" / "demo.token").read_text().strip()
            with ControlClient(data / "run" / "koradaemon.sock", timeout=10) as c:
                return str(c.call("status", "demo", token)["agent"]["state"])
        except Exception:
            return ""

    try:
        wait_for(lambda: agent_state() == "ready", 400, 1.0, "gateway ready under scripts/run")
        assert json.loads((data / "agent" / "state" / "openclaw.json").read_text())["gateway"]["mode"] == "local"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(900)
def test_an_agent_turn_calls_the_memory_search_tool(tmp_path: Path) -> None:
    """A loopback fake model answers with a call of `koradaemon__search`; the result comes back to it."""
    from fake_model import MODEL_ID, FakeModel

    assert OPENCLAW is not None
    port = free_port()
    d = gateway_daemon(tmp_path, port)
    (tmp_path / "alpha" / "notes" / "memo.md").write_text("the kora zebracorn lives in the east wing\\n")
    state = tmp_path / "alpha" / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KORA_")}
    env.update(OPENCLAW_STATE_DIR=str(state), HOME=str(tmp_path / "agent" / "home"))
    with FakeModel("zebracorn") as model:
        d.start()
        try:
            wait_for(lambda: (d.status() or {}).get("agent", {}).get("state") == "ready", 300, 0.5, "gateway ready")
            path = state / "openclaw.json"
            doc = json.loads(path.read_text())
            doc["models"] = {"providers": {"fakeai": {
                "baseUrl": f"http://127.0.0.1:{model.port}/v1", "apiKey": "test-key", "api": "openai-completions",
                "models": [{"id": MODEL_ID, "name": "Fake memory model", "reasoning": False, "input": ["text"],
                            "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                            "contextWindow": 32000, "maxTokens": 1024}]}}}
            doc["agents"] = {"defaults": {"model": {"primary": f"fakeai/{MODEL_ID}"}}}
            path.write_text(json.dumps(doc, indent=2))
            turn = subprocess.run([str(OPENCLAW), "agent", "--agent", "main", "--message",
                                   "What does my memory say about the zebracorn?", "--json"],
                                  env=env, capture_output=True, text=True, timeout=400)
            assert turn.returncode == 0, turn.stdout[-3000:] + turn.stderr[-3000:]
            (tmp_path / "model-requests.json").write_text(json.dumps(model.requests, indent=1))
            results = model.tool_results()
            offered = [[t.get("function", {}).get("name") for t in r.get("tools", []) or []] for r in model.requests]
            assert results and "memo.md" in results[-1] and "zebracorn" in results[-1], (
                len(model.requests), " ".join(offered[0] if offered else []), turn.stdout[-1500:], turn.stderr[-2000:])
            assert "MEMORY SAYS" in turn.stdout
            assert d.stop(60) == 0
        finally:
            if d.proc is not None and d.proc.poll() is None:
                stop_or_kill(d)  # SIGTERM first: a SIGKILLed daemon leaves its agent behind
