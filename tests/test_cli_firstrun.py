"""First run as a user would do it: build the wheel, install it into a fresh venv outside the repo,
`init`, put a file in, `run` with the printed command, `search` finds it. Plus print-unit."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for

REPO = Path(__file__).resolve().parent.parent


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL, **kw)  # type: ignore[call-overload, no-any-return]


def _dependencies() -> list[str]:
    """The [project] dependencies, read from pyproject.toml here (not by the package)."""
    return list(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the repo holding the wheel built from this checkout (deps from the package
    index or pip's cache). The venv gets no pip of its own (the test's pip installs into it with
    ``--python``) and no byte-compiling at install; the wheel is built while the dependencies install
    (two processes: the two cores of CI); the wheel's install then resolves its own requirements."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in ("koradaemon", "etc", "systemd"):
        shutil.copytree(REPO / name, src / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)]).check_returncode()
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-compile",
           "--disable-pip-version-check"]
    build = subprocess.Popen([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(base / "dist"),
                              str(src)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL)
    try:
        deps = _run([*pip, *_dependencies()])
    finally:
        build_err = build.communicate(timeout=600)[1]
    if build.returncode != 0:
        pytest.skip(f"cannot build the wheel here (no setuptools from the index?): {build_err[-300:]}")
    if deps.returncode != 0:
        pytest.skip(f"cannot install the wheel's dependencies (no package index?): {deps.stderr[-300:]}")
    wheel = next((base / "dist").glob("koradaemon-*.whl"))
    got = _run([*pip, str(wheel)])
    assert got.returncode == 0, got.stderr[-2000:]
    return venv


@pytest.mark.timeout(600)  # the fixture builds and installs a wheel with its dependencies: minutes under load
def test_wheel_init_run_search(installed: Path, tmp_path: Path) -> None:
    kd = str(installed / "bin" / "koradaemon")
    env = {"PATH": f"{installed / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8"}
    where = _run([kd, "-c", "/nonexistent/k.yaml", "status"], env=env, cwd=tmp_path)
    assert where.returncode == 78 and "does not exist" in where.stderr
    data = tmp_path / "kora"
    init = _run([kd, "init", "--data-root", str(data)], env=env, cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert (data / "secrets" / "vault-passphrase").stat().st_mode & 0o777 == 0o600
    assert data.stat().st_mode & 0o777 == 0o700 and (data / "koradaemon.yaml").stat().st_mode & 0o777 == 0o600
    printed = [line.strip() for line in init.stdout.splitlines() if line.strip().startswith("koradaemon ")]
    run_line = next(line for line in printed if line.endswith(" run"))
    search_line = next(line[len("then: "):] for line in init.stdout.splitlines() if line.startswith("then: "))
    (data / "demo" / "notes" / "hello.md").write_text("hello from the wheel: tamarind\n")
    run_cmd = [kd, *shlex.split(run_line)[1:]]
    again = _run([kd, "init", "--data-root", str(data)], env=env, cwd=tmp_path)
    assert again.returncode == 64 and "already exists" in again.stderr
    with subprocess.Popen(run_cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL) as proc:
        try:
            status_cmd = [kd, *shlex.split(run_line)[1:-1], "status"]
            wait_for(lambda: proc.poll() is None and _run(status_cmd, env=env).returncode == 0, 60, 0.3,
                     "daemon healthy")
            search = [kd, *shlex.split(search_line.replace("WORD", "tamarind"))[1:]]
            found = wait_for(lambda: (r := _run(search, env=env)).returncode == 0 and "hello.md" in r.stdout and r,
                             30, 0.3, "search hit")
            assert "demo/notes/hello.md" in found.stdout
            unit = _run([kd, "print-unit", "systemd"], env=env)
            assert f"ExecStart={kd} run" in unit.stdout
        finally:
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out[-2000:]


@pytest.fixture
def short_home() -> Iterator[Path]:
    """A home folder with a short path: the control socket's path must fit AF_UNIX's 108 bytes."""
    home = Path(tempfile.mkdtemp(prefix="kh", dir="/tmp"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_readme_first_run_with_the_user_layout(short_home: Path) -> None:
    """README, 'Without a checkout': init --user, run, search, from any folder, nothing else set."""
    tmp_path = short_home
    env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME="", XDG_STATE_HOME="", XDG_RUNTIME_DIR="")
    for var in ("KORA_CONFIG", "KORA_DATA_ROOT", "STATE_DIRECTORY", "CONFIGURATION_DIRECTORY", "RUNTIME_DIRECTORY",
                "KORA_RUNTIME_DIR", "NOTIFY_SOCKET"):
        env.pop(var, None)
    kd = [sys.executable, "-m", "koradaemon"]
    res = _run([*kd, "init", "--user"], env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    config = tmp_path / ".config" / "koradaemon" / "koradaemon.yaml"
    root = tmp_path / ".local" / "state" / "koradaemon"
    assert config.is_file() and (root / "secrets" / "vault-passphrase").is_file()
    assert "  koradaemon run\n" in res.stdout and "--data-root" not in res.stdout
    check = _run([*kd, "status", "--json"], env=env, cwd="/")
    assert check.returncode == 69 and "never run on the data root " + str(root) in check.stderr
    (root / "demo" / "notes" / "veg.md").write_text("a note about rutabaga\n")
    with subprocess.Popen([*kd, "run"], env=env, cwd="/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL) as proc:
        try:
            wait_for(lambda: proc.poll() is None and _run([*kd, "status"], env=env).returncode == 0, 60, 0.3,
                     "daemon healthy")
            found = wait_for(lambda: (r := _run([*kd, "search", "rutabaga"], env=env, cwd="/")).returncode == 0
                             and "veg.md" in r.stdout and r, 60, 0.3, "README search")
            assert "demo/notes/veg.md" in found.stdout
        finally:
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out[-2000:]
    other = _run([*kd, "init", "--data-root", str(tmp_path / "acme-root"), "--agency", "acme"], env=env)
    assert other.returncode == 0 and "agency_id: acme" in (tmp_path / "acme-root" / "koradaemon.yaml").read_text()


@pytest.mark.parametrize("kind", ["systemd", "systemd-user", "launchd"])
def test_print_unit_fills_in_this_installation(kind: str) -> None:
    res = _run([sys.executable, "-m", "koradaemon", "print-unit", kind])
    assert res.returncode == 0, res.stderr
    assert sys.executable in res.stdout
    if kind != "launchd":
        assert "\nExecStart=/usr/bin/env" not in res.stdout
        assert f"\nExecStart={sys.executable} -m koradaemon run" in res.stdout
    if kind == "launchd":
        assert "/Users/YOU" not in res.stdout and "<string>/usr/bin/env</string>" not in res.stdout
        assert f"<array>\n    <string>{sys.executable}</string>\n    <string>-m</string>" in res.stdout
        if shutil.which("plutil"):
            assert _run(["plutil", "-lint", "-"], input=res.stdout).returncode == 0


def test_readme_two_commands_scripts_run_then_the_commands_beside_it(short_home: Path) -> None:
    """README, 'Two commands': `scripts/run` (the daemon in the foreground on the example config and
    ./demo-data), then each line of the block for another terminal, run by bash as written, from a
    folder laid out like the checkout (its scripts copied, etc/, pyproject.toml and .venv linked)."""
    tree = short_home
    shutil.copytree(REPO / "scripts", tree / "scripts")
    for name in ("etc", "pyproject.toml", ".venv"):
        (tree / name).symlink_to(REPO / name)
    readme = (REPO / "README.md").read_text()
    block = readme[readme.index("While `scripts/run` runs, in another terminal:"):].split("```", 2)[1]
    lines = [ln.split("  #")[0].strip() for ln in block.splitlines()[1:] if ln.strip()]
    assert lines[0].startswith("K=") and lines[1].startswith("echo ") and len(lines) == 7, lines
    env = {k: v for k, v in os.environ.items() if not k.startswith("KORA_") and k not in (
        "STATE_DIRECTORY", "CONFIGURATION_DIRECTORY", "RUNTIME_DIRECTORY", "NOTIFY_SOCKET")}

    def sh(line: str) -> subprocess.CompletedProcess[str]:
        return _run(["bash", "-euo", "pipefail", "-c", f"{lines[0]}\n{line}"], cwd=tree, env=env)

    with subprocess.Popen(["bash", "scripts/run"], cwd=tree, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL) as proc:
        try:
            wait_for(lambda: proc.poll() is None and sh("$K status").returncode == 0, 120, 0.3, "scripts/run ready")
            assert sh(lines[1]).returncode == 0  # echo "a note about rutabaga" > demo-data/demo/notes/veg.md
            found = wait_for(lambda: (r := sh(lines[2])).returncode == 0 and "veg.md" in r.stdout and r, 60, 0.3,
                             "the README's search finds the note")
            assert "rutabaga" in found.stdout
            for line in lines[3:]:  # --json search, status, snapshot, audit verify
                res = sh(line)
                assert res.returncode == 0 and "Traceback" not in res.stderr, (line, res.stdout, res.stderr)
            hits = json.loads(sh(lines[3]).stdout)["hits"]
            assert [(h["root"], h["path"], h["stale"]) for h in hits] == [("demo/notes", "veg.md", False)]
            assert "rutabaga" in hits[0]["snippet"]
        finally:
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, out[-2000:]
