"""Restart policy: exponential backoff with jitter, healthy reset and crash-loop detection.

Pure bookkeeping: the caller passes the current monotonic time, nothing here sleeps or spawns.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """What to do after a failure: wait ``delay_s`` then start again; ``degraded`` means a crash loop."""

    delay_s: float
    degraded: bool
    failures_in_window: int


class RestartPolicy:
    """Exponential backoff (``initial_s`` doubling up to ``max_s``) with downward jitter.

    A run that stays healthy for ``healthy_reset_s`` forgets earlier failures. ``crash_loop_failures``
    failures within ``crash_loop_window_s`` make the policy *degraded*: retries then come every
    ``degraded_retry_s`` until a healthy run (or :meth:`reset`) clears it.
    """

    def __init__(
        self,
        *,
        initial_s: float = 1.0,
        max_s: float = 120.0,
        healthy_reset_s: float = 600.0,
        crash_loop_failures: int = 5,
        crash_loop_window_s: float = 600.0,
        degraded_retry_s: float = 300.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError("backoff needs 0 < initial_s <= max_s")
        if not 0.0 <= jitter < 1.0:
            raise ValueError("jitter must be in [0, 1)")
        self.initial_s = initial_s
        self.max_s = max_s
        self.healthy_reset_s = healthy_reset_s
        self.crash_loop_failures = crash_loop_failures
        self.crash_loop_window_s = crash_loop_window_s
        self.degraded_retry_s = degraded_retry_s
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._attempt = 0
        self._failures: deque[float] = deque()
        self._degraded = False

    @property
    def attempt(self) -> int:
        """Consecutive failures since the last reset."""
        return self._attempt

    @property
    def degraded(self) -> bool:
        return self._degraded

    def base_delay(self, attempt: int) -> float:
        """Un-jittered delay before restart number ``attempt`` (1-based)."""
        exponent = min(max(attempt - 1, 0), 62)
        return min(self.max_s, self.initial_s * (2.0**exponent))

    def on_failure(self, now: float, *, force_degraded: bool = False) -> Decision:
        """Record a failure at ``now`` and return how long to wait before the next start."""
        self._attempt += 1
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.crash_loop_window_s:
            self._failures.popleft()
        if force_degraded or len(self._failures) >= self.crash_loop_failures:
            self._degraded = True
        if self._degraded:
            return Decision(self.degraded_retry_s, True, len(self._failures))
        base = self.base_delay(self._attempt)
        delay = base * (1.0 - self.jitter * self._rng.random())
        return Decision(delay, False, len(self._failures))

    def on_healthy(self, ready_since: float, now: float) -> bool:
        """Forget failures once the child has been ready since ``ready_since`` for long enough.

        Returns True when this call performed a reset.
        """
        if now - ready_since < self.healthy_reset_s or (self._attempt == 0 and not self._degraded):
            return False
        self.reset()
        return True

    def reset(self) -> None:
        """Forget all failures and leave the degraded state (healthy period or operator request)."""
        self._attempt = 0
        self._failures.clear()
        self._degraded = False
