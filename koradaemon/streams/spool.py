"""A durable on-disk queue of event lines: append, read from the acknowledged cursor, acknowledge.

``events.jsonl`` holds lines appended in order (fdatasync per batch); ``events.cursor`` the byte
offset up to which lines were acknowledged by the stream. After a crash, lines past the cursor are
sent again (the stream drops the duplicates by message id). Once everything is acknowledged the
file is emptied.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..fsutil import atomic_write_bytes

COMPACT_BYTES = 4 * 1024 * 1024


class Spool:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = folder / "events.jsonl"
        self.cursor_path = folder / "events.cursor"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        size = os.fstat(self._fd).st_size
        self.cursor = self._load_cursor()
        if self.cursor > size:  # emptied after everything was acknowledged, then a crash
            self.cursor = 0
            self._store_cursor()

    def _load_cursor(self) -> int:
        try:
            return int(self.cursor_path.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def _store_cursor(self) -> None:
        atomic_write_bytes(self.cursor_path, f"{self.cursor}\n".encode())

    def append(self, lines: list[bytes]) -> None:
        if not lines:
            return
        data = b"".join(line + b"\n" for line in lines)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        os.fdatasync(self._fd)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def pending(self, limit: int = 256, max_bytes: int = 1 << 20) -> list[tuple[int, bytes]]:
        """Up to ``limit`` unacknowledged lines as (offset just past the line, line)."""
        data = os.pread(self._fd, max_bytes, self.cursor)
        out: list[tuple[int, bytes]] = []
        pos = 0
        while len(out) < limit:
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            out.append((self.cursor + nl + 1, data[pos:nl]))
            pos = nl + 1
        return out

    def ack(self, offset: int) -> None:
        self.cursor = offset
        if self.cursor == self.size() and self.cursor >= COMPACT_BYTES:
            os.ftruncate(self._fd, 0)
            self.cursor = 0
        self._store_cursor()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
