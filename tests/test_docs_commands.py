"""The command blocks of docs/secrets.md and docs/logs.md, run literally by bash as a user types them.

The set-up is the README's own first run (`koradaemon init --data-root DIR`), then the commands run
from that folder, where `./koradaemon.yaml` is found without any option. `koradaemon` on PATH is a
two-line shim for this checkout's interpreter.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for

DOCS = Path(__file__).resolve().parent.parent / "docs"


def sh_lines(doc: str) -> list[str]:
    """The ``koradaemon`` lines of the ```sh blocks of ``doc``, comments stripped."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", (DOCS / doc).read_text(), re.S):
        for line in block.splitlines():
            if line.startswith("koradaemon "):
                out.append(line.split("  #")[0].split(" # ")[0].rstrip())
    if not out:
        raise AssertionError(f"no koradaemon commands found in docs/{doc}")
    return out


@pytest.fixture
def first_run() -> Iterator[tuple[Path, dict[str, str]]]:
    """A data root made by `koradaemon init --data-root`, and an environment with the shim on PATH.

    Short paths under /tmp: the control socket's path must fit AF_UNIX's 108 bytes."""
    top = Path(tempfile.mkdtemp(prefix="kdoc", dir="/tmp"))
    try:
        shim = top / "bin" / "koradaemon"
        shim.parent.mkdir()
        shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m koradaemon "$@"\n')
        shim.chmod(0o755)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("KORA_", "NOTIFY_SOCKET", "RUNTIME_DIRECTORY", "STATE_DIRECTORY",
                                    "CONFIGURATION_DIRECTORY"))}
        env.update(PATH=f"{shim.parent}:{env.get('PATH', '/usr/bin:/bin')}", HOME=str(top))
        root = top / "root"
        res = subprocess.run(["koradaemon", "init", "--data-root", str(root)], env=env, capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert res.returncode == 0, res.stderr
        yield root, env
    finally:
        subprocess.run(["rm", "-rf", str(top)], check=False)


def bash(line: str, root: Path, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["bash", "-c", line], cwd=root, env=env, capture_output=True, text=True,
                         timeout=timeout, stdin=subprocess.DEVNULL)
    assert "Traceback" not in res.stderr, res.stderr
    return res


def test_secrets_doc_commands_run_as_written_through_the_daemon(first_run: tuple[Path, dict[str, str]]) -> None:
    root, env = first_run
    lines = sh_lines("secrets.md")
    assert [ln.split()[2] for ln in lines] == ["set", "set", "get", "list", "rm"]
    (root / "key.txt").write_text("sk-test-value-0042\n")
    with subprocess.Popen(["koradaemon", "run"], cwd=root, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL) as proc:
        try:
            wait_for(lambda: bash("koradaemon status --agency demo", root, env).returncode == 0, 60, 0.2,
                     "daemon healthy")
            outs = [bash(line, root, env) for line in lines]
        finally:
            proc.send_signal(signal.SIGTERM)
            err = proc.communicate(timeout=60)[1].decode(errors="replace")
    assert proc.returncode == 0, err[-2000:]
    for line, res in zip(lines, outs, strict=True):
        assert res.returncode == 0, f"{line}: {res.returncode} {res.stderr}"
    assert outs[2].stdout == "sk-test-value-0042"  # get: the value, its trailing newline dropped
    assert outs[3].stdout.split() == ["openai-key"]  # list
    after = bash("koradaemon secret list --agency demo", root, env)  # offline now: the rm took effect
    assert after.returncode == 0 and after.stdout.split() == []
    assert "sk-test-value-0042" not in err


def test_logs_doc_commands_run_as_written(first_run: tuple[Path, dict[str, str]]) -> None:
    root, env = first_run
    lines = sh_lines("logs.md")
    assert lines[:3] == ["koradaemon logs", "koradaemon logs --agency demo", "koradaemon logs -n 50"]
    assert lines[3] == "koradaemon logs --follow"
    with subprocess.Popen(["koradaemon", "run"], cwd=root, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL) as proc:
        try:
            wait_for(lambda: bash("koradaemon status --agency demo", root, env).returncode == 0, 60, 0.2,
                     "daemon healthy")
            follow = subprocess.Popen(["bash", "-c", lines[3]], cwd=root, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
            try:
                assert follow.stdout is not None
                first = follow.stdout.readline()  # a line arrives while the daemon runs
            finally:
                follow.send_signal(signal.SIGINT)  # Ctrl-C, as the doc says
                _, follow_err = follow.communicate(timeout=30)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    assert first.startswith("{"), first
    assert "Traceback" not in follow_err, follow_err
    every, demo, last = (bash(line, root, env) for line in lines[:3])
    for res in (every, demo, last):
        assert res.returncode == 0, res.stderr
    all_lines = every.stdout.splitlines()
    assert any('"event": "daemon_stopped"' in ln or "stopped" in ln for ln in all_lines[-5:]), all_lines[-5:]
    assert demo.stdout and all('"agency_id": "demo"' in ln for ln in demo.stdout.splitlines())
    assert last.stdout.splitlines() == all_lines[-50:]


def test_logs_before_the_first_run_says_so_with_exit_69(first_run: tuple[Path, dict[str, str]]) -> None:
    root, env = first_run
    res = bash("koradaemon logs", root, env)
    assert res.returncode == 69, res
    assert res.stderr.strip().splitlines() == [
        "koradaemon: error: no log file at logs/koradaemon.log yet: the daemon never ran on this data root "
        "(the daemon writes it when it runs)"]
