"""The agent's own degraded modes while it runs: from its ``/readyz`` details and from its log.

OpenClaw keeps answering ``/readyz`` 200 while its crash-loop breaker holds its channels down or its
event loop lags, so ``ready`` alone does not mean fully working; ``status`` shows these next to it.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog

from .probes import degraded_modes

log = structlog.get_logger(__name__)


class AgentModes:
    """Per run of the agent (``reset`` at each start); thread-safe (probe loop and output pumps)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready_detail: dict[str, Any] = {}
        self._breaker = False

    def reset(self) -> None:
        with self._lock:
            self._ready_detail = {}
            self._breaker = False

    def on_ready_detail(self, detail: dict[str, Any]) -> None:
        with self._lock:
            self._ready_detail = dict(detail)

    def on_output(self, _stream: str, line: str) -> None:
        """OpenClaw logs "channel autostart suppressed by crash-loop breaker" and later "... breaker recovered"."""
        low = line.lower()
        if "breaker" not in low:
            return
        tripped = "suppress" in low and "crash-loop" in low
        recovered = "recovered" in low
        if tripped or recovered:
            with self._lock:
                self._breaker = tripped and not recovered
            log.warning("agent_breaker", tripped=tripped and not recovered)

    def current(self) -> list[str]:
        with self._lock:
            modes = degraded_modes(self._ready_detail)
            if self._breaker:
                modes.append("crash_loop_breaker")
            return modes
