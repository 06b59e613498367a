"""Light rate limit for refusal reports, so a flood of garbage cannot flood the audit log."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

RefusalFn = Callable[[str | None, str, str], None]


class RefusalReporter:
    """Token bucket around ``on_refusal(agency_id, reason, op)``: ``burst`` at once, then ``rate``/s.

    Refusals over the limit are counted; the next one reported says how many were suppressed.
    """

    def __init__(
        self,
        on_refusal: RefusalFn | None,
        *,
        burst: int = 20,
        rate: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.on_refusal = on_refusal
        self.burst = burst
        self.rate = rate
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()
        self.suppressed = 0
        self.reported = 0

    def report(self, agency_id: str | None, reason: str, op: str, *, peer: object = None) -> bool:
        """Report one refusal; False when it was only counted (rate limit). ``peer`` is only logged."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens < 1.0:
                self.suppressed += 1
                log.debug("control_request_refused", agency_id=agency_id, reason=reason, op=op, suppressed=True)
                return False
            self._tokens -= 1.0
            pending, self.suppressed = self.suppressed, 0
            self.reported += 1
        log.warning(
            "control_request_refused", agency_id=agency_id, reason=reason, op=op, peer=peer, suppressed_before=pending
        )
        if self.on_refusal is None:
            return False
        if pending:
            reason = f"{reason} (+{pending} refusals suppressed by rate limit)"
        try:
            self.on_refusal(agency_id, reason, op)
        except Exception:
            log.exception("control_refusal_report_failed", agency_id=agency_id, reason=reason, op=op)
        return True
