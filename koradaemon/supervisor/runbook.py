"""The supervisor's bookkeeping of its runs (state, counters, readiness, last exit) and the reports built
from it: ``status`` for ``koradaemon status`` and ``health`` for a snapshot's manifest.

Every field is read and written under the supervisor's condition variable; nothing here locks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from .child import AgentProcess
from .modes import AgentModes

STATES = ("starting", "ready", "unhealthy", "backoff", "degraded", "paused", "stopped")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class RunBook:
    """What the supervisor knows of the current and the last run of its agent."""

    state: str = "stopped"
    starts: int = 0
    restarts: int = 0
    probe_failures: int = 0
    ready_since: float | None = None  # monotonic; None while not ready
    next_start_at: float | None = None  # monotonic; None while no start is scheduled
    last_exit: dict[str, object] | None = None
    last_tail: list[str] = field(default_factory=list)
    error: str | None = None
    good_at_stop: bool = False  # the last planned stop came after a known-good period

    def on_start(self) -> None:
        """A child was spawned: a new run with no readiness yet."""
        self.good_at_stop = False
        self.starts += 1
        self.probe_failures = 0
        self.ready_since = None

    def on_probe(self, *, live_ok: bool, is_ready: bool, was_ready: bool, now: float) -> int:
        """Book one probe round; returns the number of liveness failures in a row."""
        self.probe_failures = 0 if live_ok else self.probe_failures + 1
        if is_ready:
            self.ready_since = self.ready_since if self.ready_since is not None else now
            self.state = "ready"
        else:
            self.ready_since = None
            self.state = "unhealthy" if was_ready else "starting"
        return self.probe_failures

    def on_exit(self, info: dict[str, object], tail: list[str]) -> None:
        """The child is gone: keep how it ended and its last output lines."""
        self.ready_since = None
        self.last_tail = tail
        self.last_exit = {**info, "at": utc_now()}

    def status(self, *, agency_id: str, child: AgentProcess | None, degraded: bool,
               last_restore: dict[str, object] | None, modes: AgentModes, now: float) -> dict[str, object]:
        """A JSON-ready snapshot for ``koradaemon status``."""
        tail = child.tail(20) if child is not None else self.last_tail[-20:]
        return {
            "agency_id": agency_id,
            "state": self.state,
            "pid": child.pid if child is not None else None,
            "starts": self.starts,
            "restarts": self.restarts,
            "degraded": degraded,
            "probe_failures": self.probe_failures,
            "uptime_s": round(now - child.started_at, 3) if child is not None else None,
            "ready_for_s": round(now - self.ready_since, 3) if self.ready_since is not None else None,
            "next_start_in_s": (
                round(max(0.0, self.next_start_at - now), 3) if self.next_start_at is not None else None
            ),
            "last_exit": dict(self.last_exit) if self.last_exit else None,
            "last_restore": dict(last_restore) if last_restore else None,
            "degraded_modes": modes.current() if child is not None else [],
            "tracked_processes": len(child.descendants) if child is not None else 0,
            "error": self.error,
            "output_tail": tail,
        }

    def health(self, *, good_after_s: float, degraded: bool, now: float) -> dict[str, object]:
        """``good`` when the agent's state is known to work: ready for at least ``good_after_s`` with no
        crash since, not degraded; or stopped by a planned stop after such a period, with no start since."""
        ready_for = now - self.ready_since if self.ready_since is not None else None
        if self.state == "ready" and ready_for is not None:
            good = ready_for >= good_after_s and not degraded
        else:
            good = self.state in ("stopped", "paused") and self.good_at_stop
        return {"good": bool(good), "state": self.state,
                "ready_for_ms": int(ready_for * 1000) if ready_for is not None else None,
                "degraded": degraded}
