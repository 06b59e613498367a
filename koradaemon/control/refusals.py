"""Rate limits for refusal reports, one token bucket per agency.

A flood of garbage must not flood the audit log, and one agency's noise must not silence the
records of another: requests naming agency beta draw on beta's bucket only. Requests naming no
agency, or one the daemon does not know, share one extra bucket.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)

RefusalFn = Callable[[str | None, str, str], None]

UNNAMED = ""  # the shared bucket of requests naming no known agency
MAX_BUCKETS = 1024


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    suppressed: int = 0


class RefusalReporter:
    """Token buckets around ``on_refusal(agency_id, reason, op)``: ``burst`` at once, then ``rate``/s,
    per agency. Refusals over the limit are counted; the next one reported for that agency says how
    many were suppressed."""

    def __init__(
        self,
        on_refusal: RefusalFn | None,
        *,
        burst: int = 20,
        rate: float = 2.0,
        is_known: Callable[[str], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.on_refusal = on_refusal
        self.burst = burst
        self.rate = rate
        self._is_known = is_known
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self.suppressed = 0  # total over all agencies
        self.reported = 0

    def suppressed_for(self, agency_id: str | None) -> int:
        """Refusals of ``agency_id`` counted but not yet reported."""
        with self._lock:
            bucket = self._buckets.get(self._key(agency_id))
            return bucket.suppressed if bucket else 0

    def report(self, agency_id: str | None, reason: str, op: str, *, peer: object = None) -> bool:
        """Report one refusal; False when it was only counted (rate limit). ``peer`` is only logged."""
        with self._lock:
            bucket = self._bucket(self._key(agency_id))
            if bucket.tokens < 1.0:
                bucket.suppressed += 1
                self.suppressed += 1
                log.debug("control_request_refused", agency_id=agency_id, reason=reason, op=op, suppressed=True)
                return False
            bucket.tokens -= 1.0
            pending, bucket.suppressed = bucket.suppressed, 0
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

    def _key(self, agency_id: str | None) -> str:
        if not agency_id:
            return UNNAMED
        try:
            known = self._is_known is None or self._is_known(agency_id)
        except Exception:
            known = False
        return agency_id if known else UNNAMED

    def _bucket(self, key: str) -> _Bucket:
        """The refilled bucket of ``key`` (lock held)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._prune(now)
            if len(self._buckets) >= MAX_BUCKETS:
                key = UNNAMED
                bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        return bucket

    def _prune(self, now: float) -> None:
        """Forget buckets that have refilled and owe no count: a fresh bucket behaves the same."""
        for key, b in list(self._buckets.items()):
            if key != UNNAMED and not b.suppressed and b.tokens + (now - b.stamp) * self.rate >= self.burst:
                del self._buckets[key]
