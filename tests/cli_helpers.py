"""Helpers for the CLI tests: run the real `koradaemon` as a subprocess, and a user-less data root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from koradaemon.index.db import open_db


def kora(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60,
         stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    """``python -m koradaemon ARGS`` with a clean environment (no systemd or KORA_* variables)."""
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("KORA_", "NOTIFY_SOCKET", "RUNTIME_DIRECTORY", "STATE_DIRECTORY",
                                 "CONFIGURATION_DIRECTORY", "CREDENTIALS_DIRECTORY"))}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "koradaemon", *args], capture_output=True, text=True,
                          cwd=cwd, env=full, timeout=timeout, stdin=stdin)


def one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (fails the test on a traceback or several lines)."""
    lines = res.stderr.strip().splitlines()
    assert "Traceback" not in res.stderr, res.stderr
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{res.stderr}"
    return lines[0]


def make_index(root: Path) -> None:
    """A migrated, empty kora_kernel.db as the daemon leaves it after a clean stop (no -wal)."""
    conn = open_db(root / "kora_kernel.db")
    conn.pragma("wal_checkpoint(TRUNCATE)")
    conn.close()
    assert not (root / "kora_kernel.db-wal").exists()


def tree_state(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root`` with (size, mtime_ns, mode): to show that a command changed nothing."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return out


def dropped_user() -> tuple[str, list[str], dict[str, str]]:
    """A throw-away unprivileged user and a command prefix that runs koradaemon as it.

    The test interpreter may live under /root (unreadable to others), so the user runs the system
    python3.11 with the project and its dependencies on PYTHONPATH.
    """
    if os.geteuid() != 0:
        pytest.skip("creating a user needs root")
    system_py = Path("/usr/bin/python3.11")
    if not system_py.exists() or sys.version_info[:2] != (3, 11):
        pytest.skip("no system python3.11 matching the test interpreter for the dropped user")
    name = f"kcli{os.getpid() % 100000}"
    made = subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                          capture_output=True, text=True)
    if made.returncode not in (0, 9):  # 9: exists already
        pytest.skip(f"useradd failed: {made.stderr.strip()}")
    import site

    repo = str(Path(__file__).resolve().parent.parent)
    paths = [repo, *site.getsitepackages()]
    env = {"PYTHONPATH": os.pathsep.join(paths), "HOME": "/tmp", "PATH": "/usr/bin:/bin"}
    return name, ["setpriv", f"--reuid={name}", f"--regid={name}", "--clear-groups", str(system_py), "-m",
                  "koradaemon"], env
