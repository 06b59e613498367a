"""A durable on-disk queue of event lines: append, read from the acknowledged cursor, acknowledge.

``events.jsonl`` holds lines appended in order; ``events.cursor`` the byte offset up to which
lines were acknowledged by the stream, rewritten in place. Appends and cursor moves are plain
writes (the page cache survives a crash of the daemon); :meth:`Spool.sync` makes both durable,
which the exporter calls whenever lines cannot be sent at once (NATS down) and on stop, so the
fsyncs stay away from the moments the index path writes its own. After a crash, lines past the
cursor are sent again (the stream drops the duplicates by message id). Once everything is
acknowledged and the file is large, it is emptied.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..fsutil import fsync_dir

COMPACT_BYTES = 4 * 1024 * 1024
CURSOR_WIDTH = 20  # digits; the cursor file is always one line of this width, rewritten in place


class Spool:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = folder / "events.jsonl"
        self.cursor_path = folder / "events.cursor"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._cfd = os.open(self.cursor_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fsync_dir(folder)
        self._dirty = False
        size = os.fstat(self._fd).st_size
        self.cursor = self._load_cursor()
        if self.cursor > size:  # emptied after everything was acknowledged, then a crash
            self.cursor = 0
            self._store_cursor()

    def _load_cursor(self) -> int:
        try:
            return int(os.pread(self._cfd, 64, 0).strip() or 0)
        except ValueError:  # torn by a power loss: everything is sent again, deduplicated by id
            return 0

    def _store_cursor(self) -> None:
        os.pwrite(self._cfd, f"{self.cursor:0{CURSOR_WIDTH}d}\n".encode(), 0)
        self._dirty = True

    def append(self, lines: list[bytes]) -> None:
        if not lines:
            return
        data = b"".join(line + b"\n" for line in lines)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._dirty = True

    def sync(self) -> None:
        """Make the appended lines and the cursor durable (fdatasync of both; nothing when clean)."""
        if self._dirty:
            os.fdatasync(self._fd)
            os.fdatasync(self._cfd)
            self._dirty = False

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
            try:
                self.sync()
            finally:
                os.close(self._fd)
                os.close(self._cfd)
                self._fd = self._cfd = -1
