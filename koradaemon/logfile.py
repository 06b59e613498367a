"""The daemon's log file: size-based rotation and age-based retention that never lose a line.

Every write goes through one lock. Text is written line by line (a write that ends mid-line is
held until its newline arrives), and rotation happens only between lines: the current file is
renamed to ``<name>.<UTC timestamp>`` and a new file is opened, all under the lock, so a line is
in exactly one file, whole. Rotated files older than ``keep_days`` are deleted at each rotation.

A full disk (or an I/O error) never leaves half a line: the file is cut back to its last whole
line, the lines are held in memory (up to ``HOLD_BYTES``; past that they are counted, and the count
is written as a line of its own) and written, in order, once a retry succeeds. ``stalled`` says why
meanwhile, and ``on_change`` hears of each stall and recovery (it must not write to this file).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

from .ioerrors import describe_io_error, is_io_error

log = structlog.get_logger(__name__)

DAY_S = 86_400
HOLD_BYTES = 1 << 20  # lines kept in memory while the log file cannot be written
RETRY_S = 0.5  # while stalled, writing is tried again at most this often (each new line, or retry())


def rotated_files(path: Path) -> list[Path]:
    """The rotated files of ``path``, oldest first (their suffix is a sortable UTC timestamp)."""
    prefix = path.name + "."
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return []
    return [path.parent / n for n in sorted(n for n in names if n.startswith(prefix) and n[len(prefix):][:1].isdigit())]


class RotatingLogFile:
    """A text sink (``write``/``flush``) appending to ``path``, rotated past ``max_bytes``."""

    def __init__(self, path: Path, *, max_bytes: int, keep_days: float, mode: int = 0o640,
                 on_change: Callable[[str | None, str | None, int], None] | None = None) -> None:
        self.path = path
        self.on_change = on_change  # (stalled now, stalled before, lines dropped): outside the lock
        self.stalled: str | None = None
        self.dropped = 0  # lines lost (beyond HOLD_BYTES) since the last count written to the file
        self.lost_in_stall = 0  # lines lost in the current or last stall
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._next_try = 0.0
        self.max_bytes = max(1, max_bytes)
        self.keep_days = keep_days
        self.mode = mode
        self.rotations = 0
        self._lock = threading.Lock()
        self._partial = ""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size
        self.prune()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, self.mode)

    def write(self, text: str) -> int:
        with self._lock:
            if self._fd < 0:
                raise ValueError("log file closed")
            data = self._partial + text
            cut = data.rfind("\n") + 1
            self._partial = data[cut:]
            before = self.stalled
            if cut:
                self._emit(data[:cut].encode("utf-8", "replace"))
            change = (self.stalled, before, self.lost_in_stall) if self.stalled != before else None
        self._tell(change)
        return len(text)

    def retry(self) -> None:
        """Write held lines if the disk has room again (the daemon calls this from its main loop)."""
        with self._lock:
            before = self.stalled
            if self._fd >= 0 and before is not None:
                self._emit(b"")
            change = (self.stalled, before, self.lost_in_stall) if self.stalled != before else None
        self._tell(change)

    def _tell(self, change: tuple[str | None, str | None, int] | None) -> None:
        if change is not None and self.on_change is not None:
            with contextlib.suppress(Exception):  # the log cannot report on itself
                self.on_change(*change)

    def _emit(self, raw: bytes) -> None:
        """Write whole lines; while stalled, hold them and retry now and then, oldest first."""
        if self.stalled is not None:
            self._hold(raw)
            now = time.monotonic()
            if now < self._next_try:
                return
            self._next_try = now + RETRY_S
            if self.dropped:  # the lines lost came after those held: the count goes right there
                self._held.append(self._dropped_line())
                self.dropped = 0
            raw, self._held, self._held_bytes = b"".join(self._held), [], 0
        try:
            self._write_lines(raw)
        except _Unwritten as exc:
            if self.stalled is None:
                self._next_try = time.monotonic() + RETRY_S
                self.lost_in_stall = 0
            self.stalled = exc.reason
            self._held, self._held_bytes = [exc.rest], len(exc.rest)  # the buffer was empty: this is all of it
            return
        self.stalled = None

    def _hold(self, raw: bytes) -> None:
        if not raw:
            return
        if self.dropped or self._held_bytes + len(raw) > HOLD_BYTES:  # once dropping, until a retry
            lines = raw.count(b"\n")
            self.dropped += lines
            self.lost_in_stall += lines
            return
        self._held.append(raw)
        self._held_bytes += len(raw)

    def _dropped_line(self) -> bytes:
        line = {"event": "log_lines_dropped", "level": "warning", "lines": self.dropped, "reason": self.stalled,
                "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
        return (json.dumps(line) + "\n").encode()

    def _write_lines(self, raw: bytes) -> None:
        start = 0
        while start < len(raw):  # one line at a time only when a rotation falls inside the batch
            room = self.max_bytes - self._size
            end = len(raw) if len(raw) - start <= room else raw.find(b"\n", start) + 1
            chunk = raw[start:end]
            view = memoryview(chunk)
            try:
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
            except OSError as exc:
                if not is_io_error(exc):
                    raise
                self._cut_back()
                raise _Unwritten(describe_io_error(exc), raw[start:]) from exc
            self._size += len(chunk)
            start = end
            if self._size >= self.max_bytes:
                self._rotate()

    def _cut_back(self) -> None:
        """Drop the part of a line a failed write left behind (the file ends with a whole line)."""
        with contextlib.suppress(OSError):
            if os.fstat(self._fd).st_size > self._size:
                os.ftruncate(self._fd, self._size)

    def _rotate(self) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        target = self.path.with_name(f"{self.path.name}.{stamp}")
        n = 0
        while target.exists():  # two rotations within one microsecond
            n += 1
            target = self.path.with_name(f"{self.path.name}.{stamp}-{n}")
        os.rename(self.path, target)
        old, self._fd, self._size = self._fd, self._open(), 0
        os.close(old)
        self.rotations += 1
        self._prune_locked()

    def prune(self) -> list[Path]:
        with self._lock:
            return self._prune_locked()

    def _prune_locked(self) -> list[Path]:
        """Delete rotated files last written more than ``keep_days`` ago."""
        horizon = time.time() - self.keep_days * DAY_S
        removed = []
        for p in rotated_files(self.path):
            with contextlib.suppress(FileNotFoundError):
                if p.stat().st_mtime < horizon:
                    p.unlink()
                    removed.append(p)
        return removed

    def flush(self) -> None:
        """Each line is written when complete; there is no user-space buffer to flush."""

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0 and (self._partial or self._held):
                self._next_try = 0.0
                with contextlib.suppress(OSError):  # still no room: what is held is lost (counted above)
                    self._emit((self._partial + "\n").encode("utf-8", "replace") if self._partial else b"")
                self._partial = ""
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class _Unwritten(Exception):
    """A write failed for I/O trouble; ``rest`` are the whole lines not in the file."""

    def __init__(self, reason: str, rest: bytes) -> None:
        super().__init__(reason)
        self.reason, self.rest = reason, rest
