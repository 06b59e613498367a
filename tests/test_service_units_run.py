"""Each shipped service definition runs as written: the docs' set-up steps, then the unit's ExecStart
(specifiers filled in, with the environment systemd gives) or the plist's ProgramArguments, READY=1
(or a live control socket), SIGTERM, exit 0."""

from __future__ import annotations

import os
import plistlib
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for

from koradaemon.control.client import ControlClient
from koradaemon.service.notify_listener import NotifyListener

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "service.md"
VENV_BIN = Path(sys.executable).parent
# Commands of the docs that talk to a service manager or create system accounts: not run here.
MANAGER_COMMANDS = {"useradd", "systemctl", "journalctl", "loginctl", "launchctl", "plutil"}

pytestmark = pytest.mark.skipif(not (VENV_BIN / "koradaemon").exists(), reason="koradaemon not installed in the venv")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short folder: the control and notify sockets must fit AF_UNIX's 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ksu"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def doc_block(heading: str) -> list[str]:
    """The lines of the first ```sh block after ``heading`` in docs/service.md."""
    text = DOCS.read_text()
    start = text.index(f"\n{heading}\n")
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert block is not None, f"no sh block under {heading}"
    return [line for line in block.group(1).splitlines() if line.strip()]


def run_doc_steps(lines: list[str], *, home: Path, prefix: Path | None = None) -> None:
    """Run the file steps of a docs block as written (``sudo`` dropped and system folders moved
    under ``prefix`` for the system unit); commands of the service manager itself are left out."""
    for line in lines:
        cmd = line.removeprefix("sudo ")
        if shlex.split(cmd, comments=True)[0].lstrip("(") in MANAGER_COMMANDS:
            continue
        if prefix is not None:
            cmd = re.sub(r"(?<![\w.])/(etc|var/lib)/", lambda m: f"{prefix}/{m.group(1)}/", cmd)
        env = dict(os.environ, HOME=os.fspath(home))
        res = subprocess.run(["sh", "-c", cmd], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, f"docs step failed: {line}\n{res.stderr}"


def unit_directives(unit: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#") and re.fullmatch(r"[A-Za-z]+", key):
            out.setdefault(key, []).append(value)
    return out


def fill_specifiers(value: str, spec: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(1) == "%":
            return "%"
        assert m.group(1) in spec, f"specifier %{m.group(1)} not filled by the test"
        return spec[m.group(1)]

    return re.sub(r"%(.)", one, value)


def base_env(home: Path) -> dict[str, str]:
    """What a service manager starts with: a plain PATH (the venv's koradaemon first), HOME, LANG."""
    return {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": os.fspath(home), "LANG": "C.UTF-8"}


def start(argv: list[str], env: dict[str, str], umask: int, cwd: Path) -> subprocess.Popen[bytes]:
    def child() -> None:
        os.umask(umask)

    return subprocess.Popen(argv, env=env, cwd=cwd, preexec_fn=child, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop_and_check(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("no exit within 60 s of SIGTERM")
    assert proc.returncode == 0, out.decode(errors="replace")[-4000:]


def run_unit(unit: Path, spec: dict[str, str], env: dict[str, str], dirs: dict[str, Path], tmp: Path) -> None:
    d = unit_directives(unit)
    for var, key in (("STATE_DIRECTORY", "StateDirectory"), ("RUNTIME_DIRECTORY", "RuntimeDirectory"),
                     ("CONFIGURATION_DIRECTORY", "ConfigurationDirectory")):
        path = dirs[var] / d[key][0]
        path.mkdir(parents=True, exist_ok=True, mode=0o700)  # systemd creates these before the start
        env[var] = os.fspath(path)
    for assignment in d.get("Environment", []):
        name, _, value = fill_specifiers(assignment, spec).partition("=")
        env[name] = value
    env["WATCHDOG_USEC"] = str(int(d["WatchdogSec"][0]) * 1_000_000)
    argv = shlex.split(fill_specifiers(d["ExecStart"][0], spec))
    umask = int(d["UMask"][0], 8)
    with NotifyListener(tmp / "notify") as listener:
        env["NOTIFY_SOCKET"] = listener.address
        proc = start(argv, env, umask, cwd=Path(env["HOME"]))
        try:
            deadline = time.monotonic() + 120
            while (msg := listener.recv(0.5)) is None or msg.get("READY") != "1":
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    out, _ = proc.communicate()
                    pytest.fail(f"no READY=1 from {argv} (exit {proc.returncode}):\n"
                                f"{out.decode(errors='replace')[-4000:]}")
            stop_and_check(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_system_unit_runs_as_documented(short_tmp: Path) -> None:
    prefix = short_tmp / "sys"
    (prefix / "etc" / "systemd" / "system").mkdir(parents=True)
    home = prefix / "var" / "lib" / "koradaemon"  # the account's home (useradd --home-dir)
    run_doc_steps(doc_block("## systemd system unit"), home=home, prefix=prefix)
    unit = prefix / "etc" / "systemd" / "system" / "koradaemon.service"
    assert unit.read_text() == (REPO / "systemd" / "koradaemon.service").read_text()
    d = unit_directives(unit)
    creds = short_tmp / "creds"
    creds.mkdir(mode=0o700)
    for cred in d["LoadCredential"]:  # systemd copies each credential, mode 0400, into its own folder
        name, _, source = cred.partition(":")
        shutil.copyfile(prefix / source.removeprefix("/"), creds / name)
        (creds / name).chmod(0o400)
    env = base_env(home) | {"CREDENTIALS_DIRECTORY": os.fspath(creds)}
    spec = {"E": os.fspath(prefix / "etc"), "S": os.fspath(prefix / "var" / "lib"), "t": os.fspath(short_tmp / "run"),
            "h": os.fspath(home), "n": unit.name, "N": unit.stem}
    dirs = {"STATE_DIRECTORY": prefix / "var" / "lib", "RUNTIME_DIRECTORY": short_tmp / "run",
            "CONFIGURATION_DIRECTORY": prefix / "etc"}
    run_unit(unit, spec, env, dirs, short_tmp)
    assert (prefix / "var" / "lib" / "koradaemon" / "kora_kernel.db").exists(), "the data root is $STATE_DIRECTORY"
    assert (short_tmp / "run" / "koradaemon" / "tokens" / "demo.token").exists(), "tokens in $RUNTIME_DIRECTORY"


def test_user_unit_runs_as_documented(short_tmp: Path) -> None:
    home = short_tmp / "home"
    home.mkdir()
    run_doc_steps(doc_block("## systemd user unit"), home=home)
    unit = home / ".config" / "systemd" / "user" / "koradaemon.service"
    assert unit.read_text() == (REPO / "systemd" / "koradaemon-user.service").read_text()
    xdg_runtime = short_tmp / "xdg"
    xdg_runtime.mkdir(mode=0o700)
    env = base_env(home) | {"XDG_RUNTIME_DIR": os.fspath(xdg_runtime)}
    spec = {"E": os.fspath(home / ".config"), "S": os.fspath(home / ".local" / "state"), "t": os.fspath(xdg_runtime),
            "h": os.fspath(home), "n": unit.name, "N": unit.stem}
    dirs = {"STATE_DIRECTORY": home / ".local" / "state", "RUNTIME_DIRECTORY": xdg_runtime,
            "CONFIGURATION_DIRECTORY": home / ".config"}
    run_unit(unit, spec, env, dirs, short_tmp)
    assert (home / ".local" / "state" / "koradaemon" / "kora_kernel.db").exists()


def test_launchd_plist_runs_as_documented(short_tmp: Path) -> None:
    home = short_tmp / "h"
    (home / "Library" / "LaunchAgents").mkdir(parents=True)  # both exist on every Mac
    (home / "Library" / "Logs").mkdir(parents=True)
    run_doc_steps(doc_block("## launchd (macOS)"), home=home)
    with (home / "Library" / "LaunchAgents" / "dev.kora.koradaemon.plist").open("rb") as fh:
        plist = plistlib.load(fh)
    env = base_env(home) | plist["EnvironmentVariables"]
    env["PATH"] = f"{VENV_BIN}:{env['PATH']}"  # the plist's PATH, with this test's koradaemon in front
    data_root = Path(env["KORA_DATA_ROOT"])
    with open(plist["StandardOutPath"], "ab") as out, open(plist["StandardErrorPath"], "ab") as err:
        proc = subprocess.Popen(plist["ProgramArguments"], env=env, cwd=home, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, preexec_fn=lambda: os.umask(plist["Umask"]))
    try:
        def answers() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"exited {proc.returncode}: {Path(plist['StandardErrorPath']).read_text()[-4000:]}")
            token_file = data_root / "run" / "tokens" / "demo.token"
            if not token_file.exists():
                return False
            try:
                with ControlClient(data_root / "run" / "koradaemon.sock", timeout=5) as c:
                    return bool(c.call("ping", "demo", token_file.read_text().strip()).get("pong"))
            except Exception:
                return False

        wait_for(answers, 120, 0.1, "control socket of the launchd job")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, Path(plist["StandardErrorPath"]).read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("unit", [REPO / "systemd" / "koradaemon.service",
                                  REPO / "systemd" / "koradaemon-user.service"])
def test_exit_codes_that_need_a_human_are_not_restarted(unit: Path, tmp_path: Path) -> None:
    """The codes `run` really gives for a bad config and a usage error are in RestartPreventExitStatus."""
    codes = {int(c) for c in unit_directives(unit)["RestartPreventExitStatus"][0].split()}
    assert {64, 65, 77, 78} <= codes
    bad = tmp_path / "bad.yaml"
    bad.write_text("bogus: 1\nagencies: [{agency_id: a, roots: [notes]}]\n")
    env = base_env(tmp_path) | {"KORA_DATA_ROOT": os.fspath(tmp_path)}
    for argv, expected in ((["run", "--config", os.fspath(bad)], {78}), (["run", "--no-such-option"], {2, 64})):
        res = subprocess.run([os.fspath(VENV_BIN / "koradaemon"), *argv], env=env, capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
        assert res.returncode in expected and res.returncode in codes, (argv, res.returncode, res.stderr)
