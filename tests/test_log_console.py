"""The console stream's write errors never reach the code that logs (issue 11: full disks and logs).

stderr may be a file on a disk that fills up (a user's `koradaemon run 2> daemon.out`) or a pipe whose
reader went away; a log call in the middle of a request or a write must not raise from there. The
log file keeps every line.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import structlog
from diskutil import fill_up, small_tmpfs

from koradaemon.logsetup import configure_logging, console_lines_lost


def _restore() -> None:
    """Close the test's log file (a reconfiguration closes the previous one) and reset structlog."""
    configure_logging(level="info", fmt="json", stream=sys.stderr)
    structlog.reset_defaults()


def _log_lines(n: int) -> None:
    log = structlog.get_logger("test")
    for i in range(n):
        log.info("console_test_line", n=i)


def test_stderr_on_a_full_disk_loses_console_lines_not_the_caller_or_the_file(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "full", "1m") as disk:
        console = open(disk / "daemon.out", "w", buffering=1)  # noqa: SIM115 (closed below)
        try:
            configure_logging(level="info", fmt="json", file=tmp_path / "logs" / "k.log", stream=console)
            filler = fill_up(disk)
            _log_lines(200)  # no exception: each write to the full disk fails with ENOSPC
            filler.unlink()
            _log_lines(1)
        finally:
            _restore()
            console.close()
    lines = [json.loads(x) for x in (tmp_path / "logs" / "k.log").read_text().splitlines()]
    assert [x["n"] for x in lines if x["event"] == "console_test_line"] == [*range(200), 0]


def test_a_console_pipe_whose_reader_is_gone_raises_nothing(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    console = os.fdopen(write_end, "w", buffering=1)
    try:
        configure_logging(level="info", fmt="console", file=tmp_path / "k.log", stream=console)
        assert console_lines_lost() == 0
        _log_lines(5)  # EPIPE at every write (Python ignores SIGPIPE)
        assert console_lines_lost() >= 5, "status counts the lines the console refused"
    finally:
        _restore()
        with contextlib.suppress(BrokenPipeError):
            console.close()
    lines = [json.loads(x) for x in (tmp_path / "k.log").read_text().splitlines()]
    assert [x["n"] for x in lines if x["event"] == "console_test_line"] == [0, 1, 2, 3, 4]
