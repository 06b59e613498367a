"""The one resolver for client-supplied paths: restore targets and context folders.

A path from a client (the CLI, a socket request) is relative to the data root. It is
resolved with every symlink on the way followed (``realpath``, component by component)
and the result compared: it must lie strictly inside the data root, and neither inside
nor around any agency's watched root or one of the daemon's own folders (database,
logs, audit, snapshots, socket, tokens, vault passphrase). Missing folders are then
created from the data root's descriptor without following a symlink (``ensure_dirs``).

Chunk references are confined differently, by construction: they are opened from the
agency root's descriptor without following any symlink (:mod:`koradaemon.fsopen`).
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from .config_model import Config
from .errors import PathError
from .fsopen import NotRegularFile, open_root, open_subdir
from .paths import check_relative

CREDENTIAL_PREFIX = "credential:"


def protected_paths(cfg: Config) -> dict[Path, str]:
    """Every place a client path may neither enter nor enclose, with a name for the error."""
    root = cfg.data_root
    out: dict[Path, str] = {}
    for agency in cfg.agencies:
        for rel in agency.roots:
            out[cfg.path(rel)] = f"the watched root {rel!r} of agency {agency.agency_id!r}"
    database = cfg.path(cfg.index.database)
    files = {database: "the database", Path(f"{database}-wal"): "the database", Path(f"{database}-shm"): "the database",
             cfg.path(cfg.log.file): "the log file", cfg.socket_path(): "the control socket"}
    if not cfg.vault.passphrase_file.startswith(CREDENTIAL_PREFIX):
        files[root / cfg.vault.passphrase_file] = "the vault passphrase"
    for path, name in files.items():
        out[path] = name
        if path.parent != root:  # the folder holding it, unless that is the data root itself
            out[path.parent] = f"the folder of {name}"
    out[cfg.path(cfg.audit.dir)] = "the audit folder"
    out[cfg.path(cfg.vault.dir)] = "the snapshot folder"
    out[cfg.tokens_path()] = "the token folder"
    out.setdefault(root / "run", "the run folder (lock and pid files)")
    return out


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def resolve_client_path(cfg: Config, rel: str, *, what: str) -> Path:
    """``rel`` (relative to the data root) as a symlink-free absolute path, or a :class:`PathError`."""
    clean = check_relative(rel, what=what)
    real_root = _real(cfg.data_root)
    real = _real(cfg.data_root / clean)
    if real == real_root or not real.is_relative_to(real_root):
        raise PathError(f"{what}: {rel!r} leads outside the data root" if real != real_root
                        else f"{what}: {rel!r} is the data root itself",
                        hint="name a new folder under the data root")
    guarded = sorted(((_real(p), name) for p, name in protected_paths(cfg).items()),
                     key=lambda item: -len(item[0].parts))  # the innermost place names the error
    for path, name in guarded:
        if real.is_relative_to(path):
            raise PathError(f"{what}: {rel!r} lies inside {name}", hint="name a folder outside it")
    for path, name in guarded:
        if path.is_relative_to(real):
            raise PathError(f"{what}: {rel!r} encloses {name}", hint="name a folder that holds none of the daemon's")
    return real


def ensure_dirs(cfg: Config, real: Path) -> None:
    """Create the folder ``real`` (from :func:`resolve_client_path`) and its parents, 0700, walking
    from the data root's descriptor: a component that is (or became) a symlink is refused."""
    parts = real.relative_to(_real(cfg.data_root)).parts
    fd = open_root(cfg.data_root)
    try:
        for part in parts:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o700, dir_fd=fd)
            try:
                nxt = open_subdir(fd, part)
            except NotRegularFile as exc:
                raise PathError(f"{real.relative_to(_real(cfg.data_root))}: {part!r} is a {exc.reason}, "
                                "not a folder (it changed while it was checked)") from None
            except OSError as exc:
                if exc.errno == errno.ENOTDIR:
                    raise PathError(f"{real.relative_to(_real(cfg.data_root))}: {part!r} is not a folder") from None
                if exc.errno != errno.ENOENT:
                    raise
                raise PathError(f"{part!r} vanished while its folder was made") from None
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)
