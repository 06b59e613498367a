"""One daemon per data root: an exclusive, non-blocking flock on ``run/koradaemon.lock``.

Two processes appending to the same audit log would break its chain, so the daemon takes this
lock before it touches anything, and offline CLI commands that write take it too. The kernel
drops the lock when the process dies, so a kill -9 never leaves it stale.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import KoraError


class DataRootBusy(KoraError):
    exit_code = 75
    code = "data_root_busy"


class RunLock:
    def __init__(self, data_root: Path) -> None:
        self.path = data_root / "run" / "koradaemon.lock"
        self._fd: int | None = None

    def acquire(self, what: str = "koradaemon") -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DataRootBusy(
                f"another koradaemon (pid {holder}) is using the data root {self.path.parent.parent}",
                hint="stop it first, or use its control socket (the CLI does when it can reach it)",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {what}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire("cli")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
