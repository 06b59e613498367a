"""`koradaemon run`: logging set-up, then the daemon in the foreground until a signal stops it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import structlog

from ..config_model import Config
from ..errors import KoraError
from ..index.writer import SWITCH_INTERVAL
from ..logsetup import configure_logging
from .assembler import Daemon
from .signals import SignalFlags

PRIVATE_UMASK = 0o077


def run_daemon(cfg: Config, config_path: Path, flags: SignalFlags | None = None) -> int:
    """Run until a signal stops it; ``flags`` are the handlers the CLI installed first thing."""
    # Before anything is created: the database, WAL/SHM, logs, audit, snapshots, tokens, pid and
    # lock files and the socket are private to the daemon's user, whatever umask the caller had.
    os.umask(PRIVATE_UMASK)
    sys.setswitchinterval(SWITCH_INTERVAL)
    configure_logging(level=cfg.log.level, fmt=cfg.log.format, file=cfg.path(cfg.log.file),
                      rotate_mb=cfg.log.rotate_mb, keep_days=cfg.log.keep_days)
    log = structlog.get_logger("koradaemon")
    for warning in cfg.warnings:  # validation ran in load_config; errors stopped us before this
        log.warning("config_warning", problem=warning)
    daemon = Daemon(cfg, config_path=config_path, flags=flags)
    try:
        return daemon.run()
    except KoraError as exc:
        log.error("daemon_failed", error=exc.message, hint=exc.hint, code=exc.code)
        return exc.exit_code
