"""Re-injection levels after the agent fails.

Level 0: start again on the same state directory (the agent resumes its own sessions).
Level 1: the state is unusable (exit 78, or ``early_crash_limit`` crashes in a row before ready):
put a known-good snapshot of the state directory in place, while the agent is stopped, then start
once more. Attempt 0 restores the newest known-good snapshot; when the agent still fails before ready,
attempt 1 the one before it, and so on (each attempt audited) until the restore function has no older
one or ``max_attempts`` is reached: then exit 78 leaves the agent degraded. Ready ends the episode.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import structlog

log = structlog.get_logger(__name__)

EX_CONFIG = 78
RestoreFn = Callable[[int], bool]  # attempt n (0 = newest known-good) -> restored?


class Reinjector:
    """Decides the re-injection level after each failed run and performs level 1."""

    def __init__(
        self,
        *,
        restore_state: RestoreFn | None,
        early_crash_limit: int,
        audit: Callable[[str, dict[str, object]], None],
        max_attempts: int = 10,
    ) -> None:
        self._restore_fn = restore_state
        self.early_crash_limit = early_crash_limit
        self.max_attempts = max_attempts
        self._audit = audit
        self.early_failures = 0
        self.attempts = 0  # level-1 restores in this episode (since the agent was last ready)
        self.exhausted = False
        self.last_restore: dict[str, object] | None = None

    @property
    def restore_tried(self) -> bool:
        return self.attempts > 0

    def on_ready(self) -> None:
        """The agent reached ready: its state is usable again."""
        self.early_failures = 0
        self.attempts = 0
        self.exhausted = False

    def on_failure(self, *, returncode: int | None, was_ready: bool, spawned: bool = True) -> tuple[int, bool]:
        """Called after a failed run (agent already stopped and reaped).

        Returns ``(level, force_degraded)``: ``force_degraded`` when exit 78 cannot be cured
        (no restore available, no older known-good snapshot left, or too many attempts).
        """
        if not spawned:
            return 0, False
        self.early_failures = 0 if was_ready else self.early_failures + 1
        exit78 = returncode == EX_CONFIG
        if not exit78 and self.early_failures < self.early_crash_limit:
            return 0, False
        if self.exhausted or self._restore_fn is None or self.attempts >= self.max_attempts:
            return 0, exit78
        attempt = self.attempts
        self.attempts += 1
        self.early_failures = 0
        restored = self.restore("exit_78" if exit78 else "crash_before_ready", attempt)
        if not restored:
            self.exhausted = True
        return 1, exit78 and not restored

    def restore(self, trigger: str, attempt: int = 0) -> bool:
        """Run the restore callable; never raises. Audited as ``restore``."""
        assert self._restore_fn is not None
        error: str | None = None
        try:
            restored = bool(self._restore_fn(attempt))
        except Exception as exc:  # a failed restore must not kill the supervisor
            log.exception("agent_restore_failed", trigger=trigger, attempt=attempt)
            restored, error = False, f"{type(exc).__name__}: {exc}"
        data: dict[str, object] = {"restored": restored, "trigger": trigger, "target": "agent_state",
                                   "attempt": attempt}
        if error:
            data["error"] = error
        self.last_restore = {**data, "at": datetime.now(UTC).isoformat(timespec="seconds")}
        self._audit("restore", data)
        log.warning("agent_state_restore", **data)
        return restored
