"""Load the YAML configuration into frozen dataclasses, naming the key and line of every problem.

Reading is bounded (:mod:`koradaemon.config_yaml`), then the structure is checked against the
dataclasses of :mod:`koradaemon.config_model` (a new section is one :data:`SECTIONS` row), then
:func:`koradaemon.config_checks.validate` checks layout, files and commands. All problems are
collected and reported together.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import types
import typing
from pathlib import Path
from typing import Any

from .config_checks import ConfigInvalid, Report, validate
from .config_model import (
    AgencyConfig,
    AgentConfig,
    AuditConfig,
    Config,
    ControlConfig,
    IndexConfig,
    LogConfig,
    NatsConfig,
    VaultConfig,
    VectorsConfig,
    WatchConfig,
    WebSocketConfig,
)
from .config_yaml import MAX_CONFIG_BYTES, Node, read_tree
from .errors import ConfigError, PathError
from .paths import check_agency_id, check_relative

SECTIONS: dict[str, type] = {
    "log": LogConfig,
    "index": IndexConfig,
    "watch": WatchConfig,
    "audit": AuditConfig,
    "vault": VaultConfig,
    "control": ControlConfig,
    "agent": AgentConfig,
    "vectors": VectorsConfig,
    "websocket": WebSocketConfig,
    "nats": NatsConfig,
}
TOP_SCALARS = {"version", "shutdown_timeout_s"}


class _Bad(Exception):
    """One bad value: reported, then the key is skipped and parsing goes on."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def _scalar(key: str, node: Node, typ: Any, meta: typing.Mapping[str, Any]) -> Any:
    value = node.value
    if typ is bool:
        if not isinstance(value, bool):
            raise _Bad(key, f"expected true or false, got {_short(value)}")
        return value
    if typ is int or typ is float:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if typ is float and isinstance(value, float):
            ok = value == value and value not in (float("inf"), float("-inf"))
        if not ok:
            raise _Bad(key, f"expected {'an integer' if typ is int else 'a number'}, got {_short(value)}")
        lo, hi = meta.get("min"), meta.get("max")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise _Bad(key, f"{value} is out of range [{lo}, {hi}]")
        return typ(value)
    if typ is str:
        if not isinstance(value, str):
            raise _Bad(key, f"expected a string, got {_short(value)}")
        if "choices" in meta and value not in meta["choices"]:
            raise _Bad(key, f"{value!r} is not one of {', '.join(meta['choices'])}")
        if meta.get("path"):
            try:
                check_relative(value, what="path")
            except PathError as exc:
                raise _Bad(key, exc.message) from None
        return value
    raise _Bad(key, f"unsupported type {typ}")  # pragma: no cover - model bug


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _value(key: str, node: Node, typ: Any, meta: typing.Mapping[str, Any], rep: Report) -> Any:
    origin = typing.get_origin(typ)
    if origin is tuple:
        if not isinstance(node.value, list):
            raise _Bad(key, f"expected a list, got {_short(node.value)}")
        item_type = typing.get_args(typ)[0]
        out = []
        for i, n in enumerate(node.value):
            rep.lines[f"{key}[{i}]"] = n.line
            try:
                out.append(_value(f"{key}[{i}]", n, item_type, meta, rep))
            except _Bad as bad:
                rep.error(bad.key, bad.message)
        return tuple(out)
    if origin is dict:
        return _mapping(key, node, meta, rep)
    if origin is types.UnionType:
        raise _Bad(key, "unsupported optional")  # pragma: no cover
    return _scalar(key, node, typ, meta)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_RESERVED_ENV = ("KORA_", "OPENCLAW_STATE_DIR", "OPENCLAW_NO_RESPAWN", "OPENCLAW_DISABLE_BONJOUR", "HOME")


def _mapping(key: str, node: Node, meta: typing.Mapping[str, Any], rep: Report) -> dict[str, str]:
    """A mapping of names to plain strings (``agent.env``); each bad entry is reported on its own line."""
    if not isinstance(node.value, dict):
        raise _Bad(key, f"expected a mapping, got {_short(node.value)}")
    out: dict[str, str] = {}
    for name, child in node.value.items():
        full = f"{key}.{name}"
        rep.lines[full] = child.line
        value = child.value
        if meta.get("env") and (not _ENV_NAME.match(name) or name.startswith(_RESERVED_ENV)):
            rep.error(full, "not a variable name the agent may be given "
                      "(letters, digits, '_'; not KORA_*, HOME or the OPENCLAW_* settings the daemon sets)")
        elif isinstance(value, bool) or not isinstance(value, str | int | float):
            rep.error(full, f"expected a plain value, got {_short(value)}")
        elif "\x00" in str(value):
            rep.error(full, "contains a NUL character")
        else:
            out[name] = str(value)
    return out


def _build(cls: type, node: Node, prefix: str, rep: Report) -> Any:
    """``cls`` from a mapping node; bad keys are reported and left at their default. None if
    the node is not a mapping or lacks a required key."""
    where = prefix.rstrip(".") or "config"
    if not isinstance(node.value, dict):
        rep.error(where, f"expected a mapping, got {_short(node.value)}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, child in node.value.items():
        full = f"{prefix}{key}"
        rep.lines[full] = child.line
        if key not in fields:
            rep.error(full, f"unknown key (known: {', '.join(sorted(fields))})")
            continue
        try:
            kwargs[key] = _value(full, child, hints[key], fields[key].metadata, rep)
        except _Bad as bad:
            rep.error(bad.key, bad.message)
    required = [
        n for n, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [n for n in required if n not in node.value]
    if missing:
        rep.error(where, f"missing required key(s): {', '.join(missing)}")
    if any(n not in kwargs for n in required):
        return None  # missing, or a bad value reported above
    return cls(**kwargs)


def _agencies(node: Node | None, rep: Report) -> tuple[AgencyConfig, ...]:
    if node is None or not isinstance(node.value, list) or not node.value:
        if node is not None:
            rep.lines["agencies"] = node.line
        rep.error("agencies", "declare at least one agency (a list of mappings)")
        return ()
    out: list[AgencyConfig] = []
    for i, item in enumerate(node.value):
        rep.lines[f"agencies[{i}]"] = item.line
        agency = _build(AgencyConfig, item, f"agencies[{i}].", rep)
        if agency is None:
            continue
        try:
            check_agency_id(agency.agency_id)
        except PathError as exc:
            rep.error(f"agencies[{i}].agency_id", exc.message)
            continue
        if any(a.agency_id == agency.agency_id for a in out):
            rep.error(f"agencies[{i}].agency_id", f"duplicate agency {agency.agency_id!r}")
            continue
        out.append(agency)
    return tuple(out)


def parse_config(text: str, *, data_root: Path, source: Path | None = None, runtime_checks: bool = True) -> Config:
    """Parse and validate: every problem of the file is reported at once in one :class:`ConfigInvalid`.
    ``runtime_checks``: see :func:`koradaemon.config_checks.validate` (off only for client commands)."""
    name = str(source or "<config>")
    root = read_tree(text, name)
    rep = Report()
    if not isinstance(root.value, dict):
        raise ConfigError(f"config: line {root.line}: the top level must be a mapping")
    known = set(SECTIONS) | TOP_SCALARS | {"agencies"}
    kwargs: dict[str, Any] = {}
    for key, child in root.value.items():
        rep.lines[key] = child.line
        if key not in known:
            rep.error(key, f"unknown key (known: {', '.join(sorted(known))})")
        elif key in SECTIONS:
            section = _build(SECTIONS[key], child, f"{key}.", rep)
            if section is not None:
                kwargs[key] = section
    version = root.value["version"].value if "version" in root.value else 1
    if type(version) is not int or version != 1:
        rep.error("version", "only version 1 is supported")
    if "shutdown_timeout_s" in root.value:
        try:
            kwargs["shutdown_timeout_s"] = _scalar(
                "shutdown_timeout_s", root.value["shutdown_timeout_s"], float, {"min": 1, "max": 3600}
            )
        except _Bad as bad:
            rep.error(bad.key, bad.message)
    agencies = _agencies(root.value.get("agencies"), rep)
    cfg = Config(data_root=data_root, source=source, agencies=agencies, **kwargs)
    validate(cfg, rep, runtime=runtime_checks)
    if cfg.vectors.dims not in (64, 128, 256):
        rep.error("vectors.dims", f"{cfg.vectors.dims} is not one of 64, 128, 256")
    if rep.errors:
        raise ConfigInvalid(name, rep.errors, rep.warnings)
    return dataclasses.replace(cfg, warnings=tuple(rep.warnings))


def data_root_for(config_path: Path, override: str | None = None) -> Path:
    """The data root: --data-root, else $KORA_DATA_ROOT, else $STATE_DIRECTORY, else the config's folder."""
    for candidate in (override, os.environ.get("KORA_DATA_ROOT"), os.environ.get("STATE_DIRECTORY")):
        if candidate:
            return Path(candidate.split(":")[0]).resolve()
    return config_path.resolve().parent


def load_config(path: Path, *, data_root: Path | None = None, runtime_checks: bool = True) -> Config:
    """Read, parse and validate the configuration file: what ``check-config``, ``run`` and SIGHUP use.
    Client commands (status, search, ...) pass ``runtime_checks=False``: they skip the checks of the
    daemon's own environment (passphrase file, agent command), which an operator's shell may not share."""
    text = _read_text(path)
    return parse_config(text, data_root=data_root or data_root_for(path), source=path,
                        runtime_checks=runtime_checks)


def _read_text(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file", hint="see etc/koradaemon.example.yaml") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"{path}: the configuration is not a regular file")
        data = b""
        while len(data) <= MAX_CONFIG_BYTES and (more := os.read(fd, MAX_CONFIG_BYTES + 1 - len(data))):
            data += more
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: the configuration is larger than {MAX_CONFIG_BYTES // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: not UTF-8 ({exc.reason} "
                          f"at byte {exc.start})") from None
