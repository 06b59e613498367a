"""The agent under its own uid: it gets its folders, its HOME, its env and its agency's token, nothing more.

A dedicated user is created with useradd (tests run as root); the fake agent, spawned by a real daemon as
that user, reports from inside what it can read and what the control socket answers it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_helpers import stop_or_kill
from conftest import DaemonProc, wait_for

import koradaemon

SOURCE_ROOT = Path(koradaemon.__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def agent_user() -> Iterator[tuple[str, int, int]]:
    if os.geteuid() != 0:
        pytest.skip("creating a user and switching to it needs root")
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        pytest.skip("useradd/userdel are not installed")
    name = f"koraag{secrets.token_hex(3)}"
    res = subprocess.run(["useradd", "--system", "--no-create-home", "--user-group", name],
                         capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        pytest.skip(f"useradd failed: {res.stderr.strip()}")
    import pwd

    pw = pwd.getpwnam(name)
    try:
        yield name, pw.pw_uid, pw.pw_gid
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=60)


def _interpreter_for(uid: int, gid: int) -> str:
    """A Python the agent user may execute (the test's own may sit in a folder only root can enter)."""
    for candidate in (sys.executable, shutil.which("python3", path=os.defpath)):
        if not candidate:
            continue
        try:
            ok = subprocess.run([candidate, "-c", "import json"], user=uid, group=gid, extra_groups=[],
                                capture_output=True, timeout=60).returncode == 0
        except PermissionError:
            ok = False
        if ok:
            return candidate
    pytest.skip("no Python interpreter the agent user can execute")


def _sha_file(path: Path) -> str:
    return hashlib.sha256(path.read_text().strip().encode()).hexdigest()


def test_agent_runs_as_its_own_user_with_only_its_token_and_env(agent_user: tuple[str, int, int]) -> None:
    name, uid, gid = agent_user
    python = _interpreter_for(uid, gid)
    root = Path(tempfile.mkdtemp(prefix="kora-agent-"))
    try:
        private = {
            "database": root / "kora_kernel.db",
            "log": root / "logs" / "koradaemon.log",
            "audit": root / "audit" / "alpha" / "audit-000001.jsonl",
            "own_token_file": root / "run" / "tokens" / "alpha.token",
            "other_token": root / "run" / "tokens" / "beta.token",
            "passphrase": root / "secrets" / "pass",
        }
        port = _free_port()
        command = [python, "-m", "koradaemon.testing.fake_agent", "--port", str(port), "--other-agency", "beta"]
        for p in private.values():
            command += ["--report-access", str(p)]
        extra = f"""agent:
  enabled: true
  agency_id: alpha
  user: {name}
  command: {json.dumps(command)}
  workdir: agent
  state_dir: alpha/state
  health_url: http://127.0.0.1:{port}
  probe_interval_s: 0.1
  startup_timeout_s: 30
  drain_s: 2
  env: {{PYTHONPATH: {json.dumps(str(SOURCE_ROOT))}, AGENT_FLAVOUR: plain, AGENT_LIMIT: 5}}
"""
        d = DaemonProc(root, extra=extra)
        old = os.umask(0o077)  # the daemon's own umask is another part's job; here only the agent's view counts
        try:
            d.start()
        finally:
            os.umask(old)
        try:
            state = root / "alpha" / "state"
            wait_for(lambda: d.status() and d.status()["agent"].get("state") == "ready", 60, 0.1, "agent ready")
            report = json.loads(wait_for(lambda: (state / "access.json").exists() and (state / "access.json")
                                         .read_text(), 30, 0.05, "access report"))
            env = json.loads((state / "env.json").read_text())
            for what, path in private.items():
                assert path.exists(), what
                assert report["reads"][str(path)] == "PermissionError", (what, report["reads"][str(path)])
            assert (report["uid"], report["gid"]) == (uid, gid)
            assert 0 not in report["groups"]
            own_token = _sha_file(private["own_token_file"])
            assert report["token_env_sha256"] == own_token
            assert report["token_file_sha256"] == own_token
            assert report["control_own"] == "ok"
            assert report["control_other"] == "auth"  # its token opens nothing of beta
            home = root / "agent" / "home"
            assert report["home"] == str(home) == env["HOME"]
            for folder in (home, root / "agent", state):
                st = folder.stat()
                assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (uid, gid, 0o700), folder
            assert env["AGENT_FLAVOUR"] == "plain" and env["AGENT_LIMIT"] == "5"
            assert env["USER"] == name
            beta_token = private["other_token"].read_text().strip()
            assert beta_token not in json.dumps(env)
            assert not any(k.startswith("CREDENTIALS") for k in env)
            assert d.stop() == 0
        finally:
            if d.proc is not None and d.proc.poll() is None:
                stop_or_kill(d)  # SIGTERM first: a SIGKILLed daemon leaves its agent behind
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_symlinks_the_agent_plants_in_its_folders_are_never_followed(tmp_path: Path) -> None:
    from koradaemon.errors import SupervisorError
    from koradaemon.supervisor.identity import AgentIdentity

    root = tmp_path.resolve()
    outside = root / "outside"
    outside.mkdir()
    home = root / "agent" / "home"
    identity = AgentIdentity.resolve("", "", home)
    home.mkdir(parents=True)
    (home / ".kora").symlink_to(outside)  # the agent owns its HOME: it may plant this
    with pytest.raises(SupervisorError):
        identity.write_token(root, "secret-token")
    (home / ".kora").unlink()
    home.rmdir()
    home.symlink_to(outside)  # or replace HOME itself
    with pytest.raises(SupervisorError):
        identity.prepare(root, [home])
    with pytest.raises(SupervisorError):
        identity.write_token(root, "secret-token")
    assert list(outside.iterdir()) == []
    home.unlink()
    assert identity.write_token(root, "secret-token") == home / ".kora" / "token"
    assert (home / ".kora" / "token").read_text() == "secret-token\n"
    assert (home / ".kora" / "token").stat().st_mode & 0o777 == 0o600
