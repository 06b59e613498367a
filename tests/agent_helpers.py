"""Clean-up for tests that run a daemon with an agent."""

from __future__ import annotations

import signal
import subprocess

from conftest import DaemonProc


def stop_or_kill(d: DaemonProc, timeout: float = 60) -> None:
    """SIGTERM (the daemon stops its agent), then SIGKILL if it hangs; always reaped."""
    if d.proc is None or d.proc.poll() is not None:
        return
    d.proc.send_signal(signal.SIGTERM)
    try:
        d.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        d.proc.kill()
        d.proc.wait()
