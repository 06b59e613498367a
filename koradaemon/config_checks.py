"""The one validation of a parsed configuration: layout, files, commands, URLs.

:func:`validate` is what ``check-config``, ``run`` and SIGHUP reload all run (through
:func:`koradaemon.config.load_config`). It collects every problem, each naming its key and the
line of that key, instead of stopping at the first. Tables drive it: a new daemon-owned path is one
:data:`DAEMON_PATHS` row.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .config_model import Config
from .errors import ConfigError, PathError
from .loopback import parse_loopback_url
from .paths import check_relative

CREDENTIAL_PREFIX = "credential:"
MAX_PASSPHRASE_BYTES = 64 * 1024
_LAST_PART = re.compile(r"(\.[^.\[\]]+|\[\d+\])$")


@dataclass
class Report:
    """Errors and warnings, each one line ``KEY: line N: message``."""

    lines: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def _fmt(self, key: str, message: str) -> str:
        probe = key
        while probe:  # a key left at its default: the line of its section, if written
            if probe in self.lines:
                return f"{key}: line {self.lines[probe]}: {message}"
            parent = _LAST_PART.sub("", probe, count=1)
            probe = "" if parent == probe else parent
        return f"{key}: (default value): {message}"

    def error(self, key: str, message: str) -> None:
        self.errors.append(self._fmt(key, message))

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(self._fmt(key, message))


class ConfigInvalid(ConfigError):
    """Every problem of one configuration; the message has one line per problem."""

    def __init__(self, source: str, errors: list[str], warnings: list[str]) -> None:
        errors = sorted(errors, key=_line_of)
        warnings = sorted(warnings, key=_line_of)
        self.errors = tuple(errors)
        self.warnings = tuple(warnings)
        head = errors[0] if len(errors) == 1 else f"{len(errors)} errors in {source}:\n" + "\n".join(errors)
        tail = "".join(f"\nwarning: {w}" for w in warnings)
        super().__init__(head + tail)


def _line_of(problem: str) -> int:
    if problem.startswith("data root:"):
        return 0
    m = re.match(r"[^:]*: line (\d+): ", problem)
    return int(m.group(1)) if m else 1 << 30


@dataclass(frozen=True)
class DaemonPath:
    """A place the daemon owns. ``kind``: ``file`` (the file itself), ``folder`` (the file's folder,
    or the file when it sits directly in the data root) or ``dir``."""

    key: str
    kind: str
    where: Callable[[Config], Path | None] | None = None  # default: the key's value under the data root
    label: str = ""

    def describe(self) -> str:
        return self.label or (f"the folder of {self.key}" if self.kind == "folder" else self.key)

    def path(self, cfg: Config) -> Path | None:
        p = self.where(cfg) if self.where else cfg.path(str(_get(cfg, self.key)))
        if p is None:
            return None
        if self.kind == "folder" and p.parent != cfg.data_root:
            return p.parent
        return p


def _passphrase(cfg: Config) -> Path | None:
    spec = cfg.vault.passphrase_file
    if spec.startswith(CREDENTIAL_PREFIX):
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        return Path(creds.split(":")[0]) / spec[len(CREDENTIAL_PREFIX):] if creds else None
    try:
        return cfg.data_root / check_relative(spec)
    except PathError:
        return None


DAEMON_PATHS: tuple[DaemonPath, ...] = (
    DaemonPath("index.database", "file"),
    DaemonPath("log.file", "folder"),
    DaemonPath("audit.dir", "dir"),
    DaemonPath("vault.dir", "dir"),
    DaemonPath("control.socket", "folder", lambda c: c.socket_path()),
    DaemonPath("control.tokens_dir", "dir", lambda c: c.tokens_path()),
    DaemonPath("run", "dir", lambda c: c.path("run"), "the run folder (lock and pid files)"),
    DaemonPath("vault.passphrase_file", "folder", _passphrase),
)


@dataclass(frozen=True)
class Area:
    """A folder handed to an agency or the agent: a watched root, a state dir, the agent's folders."""

    key: str
    kind: str  # "root" | "state dir" | "agent folder"
    agency_id: str | None
    rel: str
    path: Path
    real: Path


def _get(cfg: object, dotted: str) -> object:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _real(p: Path) -> Path:
    try:
        return Path(os.path.realpath(p))
    except (OSError, ValueError):
        return p


def _relation(a: Path, ra: Path, b: Path, rb: Path) -> str | None:
    """How ``a`` stands to ``b``, as written or with symlinks resolved: same, inside, contains or None."""
    if a == b or ra == rb:
        return "same"
    if a.is_relative_to(b) or ra.is_relative_to(rb):
        return "inside"
    if b.is_relative_to(a) or rb.is_relative_to(ra):
        return "contains"
    return None


def validate(cfg: Config, report: Report, *, runtime: bool = True) -> Report:
    """Run every check on ``cfg``; problems go to ``report`` (whose ``lines`` map keys to lines).

    ``runtime=False`` leaves out what only the daemon's own environment can satisfy (the passphrase
    file's presence and mode, a ``credential:`` directory, the agent command on PATH), for client
    commands run by an operator in another environment. ``run``, ``check-config`` and reload use all."""
    root_ok = _check_data_root(cfg, report)
    areas = list(_areas(cfg))
    for area in areas:
        _check_area(cfg, area, report, root_ok)
    _check_overlaps(areas, report)
    _check_agencies(cfg, report)
    _check_vault(cfg, report, root_ok and runtime, runtime)
    _check_agent(cfg, report, runtime)
    return report


def _check_data_root(cfg: Config, report: Report) -> bool:
    root = cfg.data_root
    if not root.exists():
        report.errors.append(f"data root: {root} does not exist (koradaemon never creates it; "
                             "create it or fix --data-root)")
        return False
    if not root.is_dir():
        report.errors.append(f"data root: {root} is not a folder")
        return False
    return True


def _areas(cfg: Config) -> Iterator[Area]:
    def area(key: str, kind: str, agency_id: str | None, rel: str) -> Area:
        path = cfg.path(str(check_relative(rel))) if _safe(rel) else cfg.data_root
        return Area(key, kind, agency_id, rel, path, _real(path))

    for i, agency in enumerate(cfg.agencies):
        for j, r in enumerate(agency.roots):
            yield area(f"agencies[{i}].roots[{j}]", "root", agency.agency_id, r)
        for j, s in enumerate(agency.state_dirs):
            yield area(f"agencies[{i}].state_dirs[{j}]", "state dir", agency.agency_id, s)
    if cfg.agent.enabled:
        yield area("agent.workdir", "agent folder", cfg.agent.agency_id, cfg.agent.workdir)
        yield area("agent.state_dir", "agent folder", cfg.agent.agency_id, cfg.agent.state_dir)


def _safe(rel: str) -> bool:
    try:
        check_relative(rel)
    except PathError:
        return False
    return True


def _check_area(cfg: Config, area: Area, report: Report, root_ok: bool) -> None:
    if not _safe(area.rel):
        return  # already reported by the parser
    if str(check_relative(area.rel)) == ".":
        report.error(area.key, f"a {area.kind} of '.' is the data root itself, which holds the daemon's "
                               "database, audit log, tokens and secrets")
        return
    data_real = _real(cfg.data_root)
    if root_ok and not area.real.is_relative_to(data_real):
        report.error(area.key, f"{area.rel!r} resolves outside the data root (through a symlink)")
    hits: list[str] = []
    for dp in DAEMON_PATHS:
        own = dp.path(cfg)
        if own is None:
            continue
        rel = _relation(area.path, area.real, own, _real(own))
        if rel == "contains" and dp.key in report.lines:  # the daemon's folder was placed inside
            report.error(dp.key, f"{_show(cfg, own)!r} is inside {area.key} ({area.rel!r}), a {area.kind}")
        elif rel is not None:
            verb = {"same": "is", "inside": "is inside", "contains": "contains"}[rel]
            hits.append(f"{verb} {dp.describe()} ({_show(cfg, own)!r})")
    if hits:
        report.error(area.key, f"{area.rel!r} overlaps the daemon's own files: {'; '.join(hits)}")
    if area.kind == "root" and root_ok:
        if not os.path.lexists(area.path):
            report.warn(area.key, f"{area.rel!r} does not exist (it is not created; create it or fix the path)")
        elif not area.path.is_dir():
            report.error(area.key, f"{area.rel!r} is not a folder")


def _show(cfg: Config, p: Path) -> str:
    return str(p.relative_to(cfg.data_root)) if p.is_relative_to(cfg.data_root) else str(p)


def _check_overlaps(areas: list[Area], report: Report) -> None:
    """Roots never overlap each other; a state dir or agent folder never overlaps another agency's
    root, state dir or agent folder (its own agency's root may hold it)."""
    usable = [a for a in areas if _safe(a.rel) and str(check_relative(a.rel)) != "."]
    for j, b in enumerate(usable):
        for a in usable[:j]:
            if a.agency_id == b.agency_id and not a.kind == b.kind == "root":
                continue
            # a state dir or agent folder overlapping a root is its own fault; otherwise the later key's
            first, later = (b, a) if b.kind == "root" and a.kind != "root" else (a, b)
            rel = _relation(later.path, later.real, first.path, first.real)
            if rel is None:
                continue
            owner = f"agency {first.agency_id!r}" if first.agency_id != later.agency_id else "the same agency"
            if rel == "same":
                report.error(later.key, f"{later.rel!r} duplicates {first.key} ({first.kind} of {owner})")
            else:
                verb = "is inside" if rel == "inside" else "contains"
                report.error(later.key, f"{later.rel!r} {verb} {first.key} ({first.rel!r}, {first.kind} of {owner})")


def _check_agencies(cfg: Config, report: Report) -> None:
    from .watch.ignore import parse_line

    for i, agency in enumerate(cfg.agencies):
        if not agency.roots:
            report.error(f"agencies[{i}].roots", f"agency {agency.agency_id!r} has no roots: declare at least one")
        for j, glob in enumerate(agency.ignore):
            try:
                parse_line(glob)
            except re.error as exc:
                report.error(f"agencies[{i}].ignore[{j}]", f"bad ignore pattern {glob!r}: {exc.msg}")
            except (ValueError, RecursionError) as exc:
                report.error(f"agencies[{i}].ignore[{j}]", f"bad ignore pattern {glob!r}: {exc}")


def _check_vault(cfg: Config, report: Report, root_ok: bool, runtime: bool) -> None:
    key, spec = "vault.passphrase_file", cfg.vault.passphrase_file
    if spec.startswith(CREDENTIAL_PREFIX):
        name = spec[len(CREDENTIAL_PREFIX):]
        if not name or "/" in name or name in (".", "..") or "\x00" in name:
            report.error(key, f"bad credential name {name!r}")
            return
        if runtime and cfg.vault.enabled and not os.environ.get("CREDENTIALS_DIRECTORY"):
            report.error(key, f"{spec!r} needs $CREDENTIALS_DIRECTORY (systemd LoadCredential=)")
            return
    else:
        try:
            check_relative(spec, what="the passphrase file")
        except PathError as exc:
            report.error(key, f"{exc.message} (a file relative to the data root, or credential:NAME)")
            return
    path = _passphrase(cfg)
    credential = spec.startswith(CREDENTIAL_PREFIX)
    if runtime and cfg.vault.enabled and path is not None and (root_ok or credential):
        problem = _passphrase_problem(cfg, path, credential=credential)
        if problem:
            report.error(key, f"{spec!r} {problem}")


def _passphrase_problem(cfg: Config, path: Path, *, credential: bool) -> str | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "does not exist: create it (mode 0600) holding the vault passphrase, or set vault.enabled: false"
    except OSError as exc:
        return f"cannot be checked: {exc.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if not credential and not _real(path).is_relative_to(_real(cfg.data_root)):
        return "resolves outside the data root (through a symlink)"
    if st.st_mode & 0o077:
        return f"is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}): chmod 600 it"
    if not os.access(path, os.R_OK):
        return "is not readable by this user"
    if st.st_size == 0:
        return "is empty"
    if st.st_size > MAX_PASSPHRASE_BYTES:
        return "is larger than 64 KiB"
    return None


def _check_agent(cfg: Config, report: Report, runtime: bool) -> None:
    agent = cfg.agent
    try:
        parse_loopback_url(agent.health_url)
    except ConfigError as exc:
        report.error("agent.health_url", exc.message)
    if not agent.enabled:
        return
    if cfg.agency(agent.agency_id) is None:
        report.error("agent.agency_id", f"{agent.agency_id!r} is not a declared agency")
    if not agent.command:
        report.error("agent.command", "the agent command is empty")
        return
    if not runtime:
        return
    problem = _executable_problem(agent.command[0], cfg.path(agent.workdir) if _safe(agent.workdir) else None)
    if problem:
        report.error("agent.command[0]", problem)


def _executable_problem(exe: str, workdir: Path | None) -> str | None:
    if not exe or "\x00" in exe:
        return "the agent command is empty"
    if "/" not in exe:
        return None if shutil.which(exe) else f"{exe!r} is not found on PATH"
    p = PurePosixPath(exe)
    path = Path(p) if p.is_absolute() else (workdir / p if workdir else Path(p))
    if not path.is_file():
        return f"{exe!r} does not exist or is not a file"
    if not os.access(path, os.X_OK):
        return f"{exe!r} is not executable"
    return None
