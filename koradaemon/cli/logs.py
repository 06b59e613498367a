"""`koradaemon logs [--follow] [--agency A] [--lines N]`: the daemon's JSON log lines, rotated files included.

Reads the files directly (oldest rotated file first, then the current one); ``--follow`` keeps
reading the current file and carries on into the new one when the daemon rotates it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ..config_model import Config
from ..errors import NotRunningError, UsageError
from ..logfile import rotated_files

POLL_S = 0.2


def add_parser(sub: Any) -> None:
    lp = sub.add_parser("logs", help="print the daemon's log lines (JSON), rotated files included")
    lp.add_argument("--agency", help="only lines about this agency")
    lp.add_argument("--follow", "-f", action="store_true", help="keep printing new lines (Ctrl-C stops)")
    lp.add_argument("--lines", "-n", type=int, default=0, help="only the last N lines (0: all)")


def _matches(line: bytes, agency: str | None) -> bool:
    if agency is None:
        return True
    try:
        event = json.loads(line)
    except ValueError:
        return False
    return isinstance(event, dict) and event.get("agency_id") == agency


def _lines(fh: BinaryIO, partial: bytearray) -> Iterator[bytes]:
    """Complete lines from the current position; an unterminated tail waits in ``partial``."""
    while chunk := fh.read(1 << 16):
        partial += chunk
        *complete, rest = bytes(partial).split(b"\n")
        partial[:] = rest
        yield from complete


def _emit(lines: Iterable[bytes]) -> None:
    out = sys.stdout.buffer
    for line in lines:
        out.write(line + b"\n")
    out.flush()


def cmd_logs(cfg: Config, args: argparse.Namespace) -> int:
    if args.agency is not None and cfg.agency(args.agency) is None:
        raise UsageError(f"unknown agency {args.agency!r}", hint="see 'agencies' in the configuration")
    if args.lines < 0:
        raise UsageError("--lines must be >= 0")
    path = cfg.path(cfg.log.file)
    files = [*rotated_files(path), *([path] if path.exists() else [])]
    if not files and not args.follow:
        raise NotRunningError(f"no log file at {cfg.log.file} yet: the daemon never ran on this data root",
                              hint="the daemon writes it when it runs")
    tail: collections.deque[bytes] | None = collections.deque(maxlen=args.lines) if args.lines else None
    current: BinaryIO | None = None
    partial = bytearray()
    for f in files:
        try:
            fh = open(f, "rb")  # noqa: SIM115 - the current file stays open for --follow
        except FileNotFoundError:  # pruned meanwhile
            continue
        partial.clear()
        selected = (ln for ln in _lines(fh, partial) if ln and _matches(ln, args.agency))
        if tail is not None:
            tail.extend(selected)
        else:
            _emit(selected)
        if f == path:
            current = fh
        else:
            fh.close()
    if tail is not None:
        _emit(tail)
    if args.follow:
        try:
            _follow(path, current, partial, args.agency)
        except KeyboardInterrupt:
            return 0
    elif current is not None:
        current.close()
    return 0


def _follow(path: Path, fh: BinaryIO | None, partial: bytearray, agency: str | None) -> None:
    """Print new lines for ever. When the file being read is no longer the current one (rotated,
    perhaps several times between two looks), finish it, then read every file rotated after it."""
    while True:
        if fh is not None:
            _emit(ln for ln in _lines(fh, partial) if ln and _matches(ln, agency))
        try:
            st = os.stat(path)
        except FileNotFoundError:
            time.sleep(POLL_S)
            continue
        if fh is None:
            fh = open(path, "rb")  # noqa: SIM115
            continue
        ino = os.fstat(fh.fileno()).st_ino
        if ino == st.st_ino:
            time.sleep(POLL_S)
            continue
        _emit(ln for ln in _lines(fh, partial) if ln and _matches(ln, agency))
        fh.close()
        partial.clear()
        fh = _next_file(path, ino)


def _next_file(path: Path, ino: int) -> BinaryIO | None:
    """The file written after the one with inode ``ino``: the next rotated file, else the current."""
    rotated = rotated_files(path)
    for i, p in enumerate(rotated):
        try:
            if os.stat(p).st_ino == ino:
                for later in rotated[i + 1:]:
                    try:
                        return open(later, "rb")
                    except FileNotFoundError:  # pruned meanwhile
                        continue
                break
        except FileNotFoundError:
            continue
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None
