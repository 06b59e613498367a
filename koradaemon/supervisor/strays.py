"""Processes the agent spawned outside its process group (own session, e.g. OpenClaw's spawn broker).

A group kill does not reach them, and once their parent dies they are re-parented away, so they are
recorded by parentage while the agent runs (each probe round) and ended after it: SIGTERM, a short
wait, SIGKILL, and a wait until they are gone. A recorded process is a psutil handle bound to its
creation time, so a recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import signal
import threading

import psutil
import structlog

from .pidfile import wait_gone

log = structlog.get_logger(__name__)


class DescendantTracker:
    def __init__(self) -> None:
        self._seen: dict[tuple[int, float], psutil.Process] = {}
        self._lock = threading.Lock()

    def record(self, leader_pid: int | None) -> int:
        """Remember every current descendant of ``leader_pid``; returns how many are known in all."""
        if leader_pid is None:
            return len(self._seen)
        try:
            children = psutil.Process(leader_pid).children(recursive=True)
        except psutil.Error:
            children = []
        with self._lock:
            for proc in children:
                with contextlib.suppress(psutil.Error):
                    self._seen.setdefault((proc.pid, proc.create_time()), proc)
            return len(self._seen)

    def end_all(self, grace_s: float) -> int:
        """End every recorded process still running; wait for them. Returns how many had to be ended."""
        with self._lock:
            procs = list(self._seen.values())
            self._seen.clear()
        alive = [p for p in procs if _running(p)]
        if not alive:
            return 0
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGTERM)
        rest = wait_gone(alive, grace_s)
        for proc in rest:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        left = wait_gone(rest, 5.0)
        log.warning("agent_strays_ended", count=len(alive), killed=len(rest), unkillable=len(left))
        return len(alive)

    def __len__(self) -> int:
        return len(self._seen)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
