"""sd_notify written by hand: datagrams to ``$NOTIFY_SOCKET`` (systemd's readiness protocol).

A :class:`Notifier` built from an environment without ``NOTIFY_SOCKET`` (foreground run, launchd)
is a no-op. Send errors are logged, never raised: a service manager that went away must not take
the daemon down with it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, MutableMapping

import structlog

log = structlog.get_logger(__name__)

NOTIFY_ENV_KEYS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def socket_address(value: str) -> str | bytes:
    """Map a ``NOTIFY_SOCKET`` value to a ``sendto`` address (``@name`` is the abstract namespace)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def watchdog_usec(env: Mapping[str, str], pid: int) -> int | None:
    """``WATCHDOG_USEC`` when it is meant for ``pid`` (``WATCHDOG_PID`` unset or equal), else None."""
    raw_pid = env.get("WATCHDOG_PID")
    if raw_pid:
        try:
            if int(raw_pid) != pid:
                return None
        except ValueError:
            return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None


class Notifier:
    """Sends state lines (``READY=1``, ``STATUS=...``) to the service manager."""

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self.address = address
        self._watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, env: MutableMapping[str, str] | None = None, *, unset_environment: bool = False) -> Notifier:
        """Build from ``NOTIFY_SOCKET``/``WATCHDOG_*``; with ``unset_environment`` remove them so
        children (the supervised agent) do not inherit them."""
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET") or None
        notifier = cls(address, watchdog_usec=watchdog_usec(env, os.getpid()))
        if unset_environment:
            for key in NOTIFY_ENV_KEYS:
                env.pop(key, None)
        return notifier

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> bool:
        """Send one datagram of ``KEY=VALUE`` lines; True when it was delivered."""
        if self.address is None:
            return False
        payload = "\n".join(lines).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, socket_address(self.address))
        except OSError as exc:
            log.warning("sd_notify_failed", socket=self.address, error=str(exc), state=lines[0] if lines else "")
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *_status(status))

    def status(self, text: str) -> bool:
        return self.send(*_status(text))

    def reloading(self, status: str | None = None) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC`` (required by ``Type=notify-reload``); send ``ready()``
        when the reload is done."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *_status(status))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings: half of ``WATCHDOG_USEC``, or None when not asked for."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2_000_000

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return ("STATUS=" + " ".join(text.splitlines()),)
