"""Shared helpers for the supervisor tests (no tests here): a real fake agent, real ports, real files."""

from __future__ import annotations

import json
import shutil
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from koradaemon.audit.canonical import validate
from koradaemon.supervisor import Supervisor

FAST: dict[str, Any] = {
    "probe_interval_s": 0.05,
    "probe_timeout_s": 0.5,
    "hung_after_failures": 3,
    "startup_timeout_s": 10.0,
    "drain_s": 2.0,
    "backoff_initial_s": 0.05,
    "backoff_max_s": 0.4,
    "healthy_reset_s": 60.0,
    "crash_loop_failures": 5,
    "crash_loop_window_s": 60.0,
    "degraded_retry_s": 60.0,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent_command(port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "koradaemon.testing.fake_agent", "--port", str(port), *extra]


class AuditLog:
    """Collects audit records; checks each one is valid KBL-1 data (no floats, good keys)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, object]]] = []
        self._lock = threading.Lock()

    def __call__(self, agency_id: str, record_type: str, data: dict[str, object]) -> None:
        validate(data)
        with self._lock:
            self.records.append((agency_id, record_type, dict(data)))

    def of(self, record_type: str) -> list[dict[str, object]]:
        with self._lock:
            return [d for _, t, d in self.records if t == record_type]

    def types(self) -> list[str]:
        with self._lock:
            return [t for _, t, _ in self.records]


def make_supervisor(
    tmp_path: Path,
    *agent_args: str,
    audit: AuditLog | None = None,
    restore_state: Callable[[int], bool] | None = None,
    **overrides: Any,
) -> Supervisor:
    port = free_port()
    params = {**FAST, **overrides}
    return Supervisor(
        agency_id="acme",
        command=agent_command(port, *agent_args),
        workdir=tmp_path / "agent",
        state_dir=tmp_path / "agent" / "state",
        run_dir=tmp_path / "run",
        health_url=f"http://127.0.0.1:{port}",
        audit=audit,
        restore_state=restore_state,
        **params,
    )


def copy_restore(good: Path, state_dir: Path, calls: list[str]) -> Callable[[int], bool]:
    """A restore callable that replaces ``state_dir`` with a copy of ``good`` (a real file operation)."""

    def restore(attempt: int) -> bool:
        calls.append("restore")
        shutil.rmtree(state_dir, ignore_errors=True)
        shutil.copytree(good, state_dir)
        return True

    return restore


def set_mode(state_dir: Path, mode: str) -> None:
    """Tell the running fake agent what to do next (atomic write: it polls the file)."""
    tmp = state_dir / "mode.tmp"
    tmp.write_text(mode, encoding="utf-8")
    tmp.replace(state_dir / "mode")


def read_state(state_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((state_dir / "state.json").read_text(encoding="utf-8"))
    return data


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie awaiting a foreign parent counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def status_of(sup: Supervisor) -> dict[str, Any]:
    return dict(sup.status())
