"""The daemon's log file: size-based rotation and age-based retention that never lose a line.

Every write goes through one lock. Text is written line by line (a write that ends mid-line is
held until its newline arrives), and rotation happens only between lines: the current file is
renamed to ``<name>.<UTC timestamp>`` and a new file is opened, all under the lock, so a line is
in exactly one file, whole. Rotated files older than ``keep_days`` are deleted at each rotation.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

DAY_S = 86_400


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

    def __init__(self, path: Path, *, max_bytes: int, keep_days: float, mode: int = 0o640) -> None:
        self.path = path
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
            if cut:
                self._write_lines(data[:cut].encode("utf-8", "replace"))
        return len(text)

    def _write_lines(self, raw: bytes) -> None:
        start = 0
        while start < len(raw):  # one line at a time only when a rotation falls inside the batch
            room = self.max_bytes - self._size
            end = len(raw) if len(raw) - start <= room else raw.find(b"\n", start) + 1
            chunk = raw[start:end]
            view = memoryview(chunk)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            self._size += len(chunk)
            start = end
            if self._size >= self.max_bytes:
                self._rotate()

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
            if self._partial and self._fd >= 0:
                self._write_lines((self._partial + "\n").encode("utf-8", "replace"))
                self._partial = ""
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
