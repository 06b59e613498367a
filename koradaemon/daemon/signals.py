"""Signal handlers that only set flags; the main loop acts on them (cf. uvicorn's capture_signals)."""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType


class SignalFlags:
    """SIGTERM/SIGINT: stop; SIGHUP: reload; SIGUSR1: snapshot. A second SIGINT forces exit."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()
        self.snapshot = threading.Event()
        self.wake = threading.Event()
        self.stop_signal: str | None = None
        self._sigints = 0
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        """Idempotent: a second call keeps the first call's saved handlers."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            previous = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, previous)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            self._sigints += 1
            if self._sigints >= 2:
                os.write(2, b"koradaemon: second SIGINT, forcing exit\n")
                os._exit(130)
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stop_signal = signal.Signals(signum).name
            self.stop.set()
        elif signum == signal.SIGHUP:
            self.reload.set()
        elif signum == signal.SIGUSR1:
            self.snapshot.set()
        self.wake.set()
