"""The receiving end of sd_notify, for tests and local runs: what systemd would see.

Bind it, put its ``address`` into a child's ``NOTIFY_SOCKET`` and read the messages::

    with NotifyListener(tmp_path / "notify") as listener:
        start_daemon(env={"NOTIFY_SOCKET": listener.address})
        listener.wait_for("READY", timeout=30)
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from .notify import socket_address


class NotifyListener:
    def __init__(self, path: Path | str) -> None:
        self.address = os.fspath(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind(socket_address(self.address))
        self.received: list[dict[str, str]] = []

    def recv(self, timeout: float = 10.0) -> dict[str, str] | None:
        """The next datagram as ``{KEY: value}``; None when nothing arrives within ``timeout``."""
        self.sock.settimeout(max(timeout, 0.000001))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return None
        message = dict(line.partition("=")[::2] for line in data.decode().split("\n") if line)
        self.received.append(message)
        return message

    def wait_for(self, key: str, timeout: float = 10.0, value: str = "1") -> dict[str, str]:
        """Read messages until one has ``key=value``; ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            message = self.recv(remaining)
            if message is not None and message.get(key) == value:
                return message
        raise TimeoutError(f"no {key}={value} within {timeout}s (got {self.received})")

    def close(self) -> None:
        self.sock.close()
        if not self.address.startswith("@"):
            Path(self.address).unlink(missing_ok=True)

    def __enter__(self) -> NotifyListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
