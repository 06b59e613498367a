"""Per-change latency, queued → committed (searchable), per agency and phase, over a recent window.

The writer adds one figure per committed file: the time from the moment its change was queued (by
the watcher after the debounce, or by a crawl) to the commit that made it searchable. ``crawl``
changes (start-up sync, rescans, reconciles) and ``live`` ones (watcher events) are kept apart:
a crawl queues thousands of files at once, so its waits say nothing about how fast an edit shows up.

Each (agency, phase) has a fixed ring of ``WINDOW`` doubles, allocated once: adding a figure
stores a float in place (no allocation); percentiles sort a copy when ``status`` asks.
Only the writer thread adds; readers may see a ring mid-update, which costs one figure at most.
"""

from __future__ import annotations

from array import array

WINDOW = 512  # a power of two: the slot is ``n & (WINDOW - 1)``
PHASES = ("crawl", "live")
_MASK = WINDOW - 1


class _Ring:
    __slots__ = ("n", "values")

    def __init__(self) -> None:
        self.values = array("d", bytes(8 * WINDOW))
        self.n = 0  # figures added so far (the ring holds the last WINDOW of them)

    def recent(self) -> list[float]:
        return list(self.values[:min(self.n, WINDOW)])


class LatencyWindow:
    def __init__(self) -> None:
        self._rings: dict[str, tuple[_Ring, _Ring]] = {}

    def add(self, agency_id: str, crawl: bool, seconds: float) -> None:
        rings = self._rings.get(agency_id)
        if rings is None:
            rings = self._rings[agency_id] = (_Ring(), _Ring())
        ring = rings[0] if crawl else rings[1]
        n = ring.n
        ring.values[n & _MASK] = seconds  # monotonic clock differences: never negative
        ring.n = n + 1

    def summary(self, agency_id: str | None = None) -> dict[str, dict[str, float]]:
        """``{"crawl": {...}, "live": {...}}`` with ``count`` (all-time), ``window`` and ``p50_ms`` /
        ``p99_ms`` over the window (absent while nothing was measured); one agency's or everyone's."""
        if agency_id is None:
            chosen = list(self._rings.values())
        else:
            mine = self._rings.get(agency_id)
            chosen = [mine] if mine is not None else []
        out = {}
        for i, phase in enumerate(PHASES):
            values = [v for rings in chosen for v in rings[i].recent()]
            out[phase] = {"count": sum(rings[i].n for rings in chosen), "window": len(values),
                          **percentiles(values)}
        return out


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    s = sorted(values)
    p99 = s[min(len(s) - 1, int(len(s) * 0.99))]
    return {"p50_ms": round(s[len(s) // 2] * 1000, 3), "p99_ms": round(p99 * 1000, 3)}
