"""When to take snapshots: an auto-timer per agency and settled milestones. Pure logic."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

TIMER = "timer"
MILESTONE = "milestone"


class SnapshotScheduler:
    """``note_change`` marks a milestone; ``due`` returns ``(agency_id, trigger)`` pairs to take now.

    A milestone is due once no change was noted for ``settle_s``. The timer fires every
    ``interval_s`` (0 disables it) per tracked agency; any snapshot handed out resets it.
    """

    def __init__(self, *, interval_s: float, settle_s: float, agencies: Iterable[str] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.settle_s = settle_s
        self._clock = clock
        self._mutex = threading.Lock()
        self._last_taken: dict[str, float] = {}
        self._changed: dict[str, float] = {}
        start = clock()
        for agency_id in agencies:
            self._last_taken[agency_id] = start

    def track(self, agency_id: str, now: float | None = None) -> None:
        """Put an agency under the auto-timer (its first timer snapshot is ``interval_s`` from now)."""
        with self._mutex:
            self._last_taken.setdefault(agency_id, self._now(now))

    def note_change(self, agency_id: str, now: float | None = None) -> None:
        with self._mutex:
            t = self._now(now)
            self._changed[agency_id] = t
            self._last_taken.setdefault(agency_id, t)

    def taken(self, agency_id: str, now: float | None = None) -> None:
        """A snapshot was taken by another trigger: restart the timer."""
        with self._mutex:
            self._last_taken[agency_id] = self._now(now)

    def due(self, now: float | None = None) -> list[tuple[str, str]]:
        with self._mutex:
            t = self._now(now)
            out: list[tuple[str, str]] = []
            for agency_id, changed in list(self._changed.items()):
                if t - changed >= self.settle_s:
                    del self._changed[agency_id]
                    self._last_taken[agency_id] = t
                    out.append((agency_id, MILESTONE))
            if self.interval_s > 0:
                for agency_id, last in self._last_taken.items():
                    if t - last >= self.interval_s:
                        self._last_taken[agency_id] = t
                        out.append((agency_id, TIMER))
            return out

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now
