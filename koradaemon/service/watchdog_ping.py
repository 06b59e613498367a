"""``WATCHDOG=1`` keep-alive pings, driven by the daemon's main loop.

There is deliberately no thread here: the main loop calls :meth:`WatchdogPinger.tick` on every
turn, so when the main loop hangs the pings stop and systemd restarts the service after
``WatchdogSec``. Optional ``checks`` let the loop vouch for other parts too (e.g. the writer
thread still making progress): a failing check withholds the ping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import structlog

from .notify import Notifier

log = structlog.get_logger(__name__)


class WatchdogPinger:
    def __init__(
        self,
        notifier: Notifier,
        *,
        interval: float | None = None,
        checks: Sequence[Callable[[], bool]] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.notifier = notifier
        self.interval = interval if interval is not None else notifier.watchdog_interval()
        self.checks = tuple(checks)
        self._clock = clock
        self._last: float | None = None
        self.pings = 0

    @property
    def enabled(self) -> bool:
        return self.interval is not None and self.notifier.enabled

    def seconds_until_due(self) -> float | None:
        """How long the main loop may sleep before the next ping is due (None: no watchdog)."""
        if not self.enabled or self.interval is None:
            return None
        if self._last is None:
            return 0.0
        return max(0.0, self._last + self.interval - self._clock())

    def tick(self) -> bool:
        """Ping if one is due and every check passes; True when a ping was sent."""
        due = self.seconds_until_due()
        if due is None or due > 0:
            return False
        failed = [getattr(check, "__name__", repr(check)) for check in self.checks if not _safe(check)]
        if failed:
            log.warning("watchdog_ping_withheld", failed_checks=failed)
            return False
        self._last = self._clock()
        if self.notifier.watchdog():
            self.pings += 1
            return True
        return False


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:
        log.exception("watchdog_check_raised")
        return False
