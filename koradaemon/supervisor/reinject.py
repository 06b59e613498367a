"""Re-injection levels after the agent fails.

Level 0: start again on the same state directory (the agent resumes its own sessions).
Level 1: the state is unusable (exit 78, or ``early_crash_limit`` crashes in a row before ready):
put the last snapshot of the state directory in place, while the agent is stopped, then start once more.
Level 1 is tried once until the agent reaches ready again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import structlog

log = structlog.get_logger(__name__)

EX_CONFIG = 78
RestoreFn = Callable[[], bool]


class Reinjector:
    """Decides the re-injection level after each failed run and performs level 1."""

    def __init__(
        self,
        *,
        restore_state: RestoreFn | None,
        early_crash_limit: int,
        audit: Callable[[str, dict[str, object]], None],
    ) -> None:
        self._restore_fn = restore_state
        self.early_crash_limit = early_crash_limit
        self._audit = audit
        self.early_failures = 0
        self.restore_tried = False
        self.last_restore: dict[str, object] | None = None

    def on_ready(self) -> None:
        """The agent reached ready: its state is usable again."""
        self.early_failures = 0
        self.restore_tried = False

    def on_failure(self, *, returncode: int | None, was_ready: bool, spawned: bool = True) -> tuple[int, bool]:
        """Called after a failed run (agent already stopped and reaped).

        Returns ``(level, force_degraded)``: ``force_degraded`` when exit 78 cannot be cured
        (no restore available, restore failed, or already restored once).
        """
        if not spawned:
            return 0, False
        self.early_failures = 0 if was_ready else self.early_failures + 1
        exit78 = returncode == EX_CONFIG
        if not exit78 and self.early_failures < self.early_crash_limit:
            return 0, False
        if self.restore_tried or self._restore_fn is None:
            return 0, exit78
        self.restore_tried = True
        restored = self.restore("exit_78" if exit78 else "crash_before_ready")
        return 1, exit78 and not restored

    def restore(self, trigger: str) -> bool:
        """Run the restore callable; never raises. Audited as ``restore``."""
        assert self._restore_fn is not None
        error: str | None = None
        try:
            restored = bool(self._restore_fn())
        except Exception as exc:  # a failed restore must not kill the supervisor
            log.exception("agent_restore_failed", trigger=trigger)
            restored, error = False, f"{type(exc).__name__}: {exc}"
        data: dict[str, object] = {"restored": restored, "trigger": trigger, "target": "agent_state"}
        if error:
            data["error"] = error
        self.last_restore = {**data, "at": datetime.now(UTC).isoformat(timespec="seconds")}
        self._audit("restore", data)
        log.warning("agent_state_restore", **data)
        return restored
