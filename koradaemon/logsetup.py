"""structlog set-up: JSON lines to a file under a service, a readable console in the foreground."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import structlog

from .logfile import RotatingLogFile

_open_file: RotatingLogFile | None = None
_console: _Console | None = None

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def under_service_manager() -> bool:
    """True when systemd or launchd started us (no TTY to talk to)."""
    return bool(os.environ.get("INVOCATION_ID") or os.environ.get("XPC_SERVICE_NAME")) or not sys.stderr.isatty()


def configure_logging(
    *, level: str = "info", fmt: str = "auto", file: Path | None = None, stream: TextIO | None = None,
    rotate_mb: float = 64, keep_days: float = 14,
) -> None:
    """Configure structlog once for the process.

    ``fmt`` is ``json``, ``console`` or ``auto`` (JSON under a service manager or when not on a TTY).
    With ``file`` set, JSON lines also go to that file (created with its folder, mode 0640), rotated
    past ``rotate_mb`` and its rotated files deleted after ``keep_days`` (see logfile.py).
    """
    use_json = fmt == "json" or (fmt == "auto" and under_service_manager())
    global _console
    _console = _Console(stream or sys.stderr)
    out: Any = _console
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any
    if use_json:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        log_file = RotatingLogFile(file, max_bytes=int(rotate_mb * 1024 * 1024), keep_days=keep_days,
                                   on_change=_reporter(out, file))
        out = _Tee(out, log_file, skip_file=not use_json)
        if not use_json:
            shared.append(_JsonToFile(out))  # type: ignore[arg-type, unused-ignore]
    global _open_file
    previous, _open_file = _open_file, (log_file if file is not None else None)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    if previous is not None:  # a reconfiguration (SIGHUP) must not leak the old log file
        previous.close()


def log_file_stalled() -> str | None:
    """Why the daemon's log file cannot be written ("disk full: ..."), or None."""
    f = _open_file
    return f.stalled if f is not None else None


def console_lines_lost() -> int:
    """Log lines the console stream (stderr) refused since logging was configured (see :class:`_Console`)."""
    c = _console
    return c.lost if c is not None else 0


def retry_log_file() -> None:
    """Write lines held while the log file could not be written, if there is room again."""
    f = _open_file
    if f is not None and f.stalled is not None:
        f.retry()


def _reporter(stream: TextIO, file: Path) -> Callable[[str | None, str | None, int], None]:
    """Tells the console stream (the journal under systemd) when the log file stalls and recovers:
    one JSON line each, written directly (the log file is the one thing that cannot carry it)."""
    def report(now: str | None, before: str | None, lost: int) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line: dict[str, object]
        if now is not None:
            line = {"event": "log_file_stalled", "level": "error", "reason": now, "file": str(file),
                    "action": "lines held in memory and written once there is room; no other part stops",
                    "timestamp": stamp}
        else:
            line = {"event": "log_file_resumed", "level": "warning", "was": before, "lines_lost": lost,
                    "file": str(file), "timestamp": stamp}
        stream.write(json.dumps(line) + "\n")
        stream.flush()

    return report


class _Console:
    """The console stream (stderr: the journal, a pipe, or a file a user redirected it to), whose
    write errors never reach the code that logs: a full disk under a redirected stderr, or a pipe
    whose reader went away, must not stop a thread in the middle of its work. Lines that cannot
    be written are counted (``lost``) and the log file, when there is one, still gets them."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.lost = 0

    def write(self, text: str) -> int:
        try:
            self.stream.write(text)
        except (OSError, ValueError):  # ValueError: the stream was closed
            self.lost += 1
        return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            self.lost += 1

    def isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (OSError, ValueError):
            return False


class _Tee:
    """Writes console output to the stream and, for JSON, the same line to the log file."""

    def __init__(self, stream: TextIO, file: RotatingLogFile, *, skip_file: bool) -> None:
        self.stream = stream
        self.file = file
        self.skip_file = skip_file

    def write(self, text: str) -> int:
        self.stream.write(text)
        if not self.skip_file:
            with contextlib.suppress(OSError, ValueError):  # closed by a reconfiguration meanwhile
                self.file.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
        with contextlib.suppress(OSError, ValueError):
            self.file.flush()


class _JsonToFile:
    """A processor that copies each event as a JSON line into the log file, leaving the event untouched."""

    def __init__(self, tee: _Tee) -> None:
        self.tee = tee
        self.render = structlog.processors.JSONRenderer()

    def __call__(self, logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
        with contextlib.suppress(OSError, TypeError, ValueError):
            self.tee.file.write(str(self.render(logger, name, dict(event))) + "\n")
        return event
