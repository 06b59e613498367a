"""Load the YAML configuration into frozen dataclasses, naming the key and line of every problem."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml

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
    WatchConfig,
    WebSocketConfig,
)
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
    "websocket": WebSocketConfig,
    "nats": NatsConfig,
}
TOP_SCALARS = {"version", "shutdown_timeout_s"}


class _Node:
    """A YAML value with the line it came from (1-based)."""

    __slots__ = ("line", "value")

    def __init__(self, value: Any, line: int) -> None:
        self.value = value
        self.line = line


def _convert(node: yaml.Node, loader: yaml.SafeLoader, where: str) -> _Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, _Node] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node)  # type: ignore[no-untyped-call]
            if not isinstance(key, str):
                raise ConfigError(f"{where}: line {key_node.start_mark.line + 1}: keys must be strings")
            if key in out:
                raise ConfigError(f"{where}{key}: line {key_node.start_mark.line + 1}: duplicate key")
            out[key] = _convert(value_node, loader, f"{where}{key}.")
        return _Node(out, line)
    if isinstance(node, yaml.SequenceNode):
        return _Node([_convert(n, loader, where) for n in node.value], line)
    return _Node(loader.construct_object(node), line)  # type: ignore[no-untyped-call]


def _parse_yaml(text: str, source: str) -> _Node:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{source}: the configuration is empty", hint="see etc/koradaemon.example.yaml")
        return _convert(node, loader, "")
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: malformed YAML: {exc}") from exc
    finally:
        loader.dispose()


def _fail(key: str, node: _Node, message: str) -> ConfigError:
    return ConfigError(f"{key}: line {node.line}: {message}")


def _scalar(key: str, node: _Node, typ: Any, meta: typing.Mapping[str, Any]) -> Any:
    value = node.value
    if typ is bool:
        if not isinstance(value, bool):
            raise _fail(key, node, f"expected true or false, got {value!r}")
        return value
    if typ is int or typ is float:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if typ is float and isinstance(value, float):
            ok = value == value and value not in (float("inf"), float("-inf"))
        if not ok:
            raise _fail(key, node, f"expected {'an integer' if typ is int else 'a number'}, got {value!r}")
        lo, hi = meta.get("min"), meta.get("max")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise _fail(key, node, f"{value} is out of range [{lo}, {hi}]")
        return typ(value)
    if typ is str:
        if not isinstance(value, str):
            raise _fail(key, node, f"expected a string, got {value!r}")
        if "choices" in meta and value not in meta["choices"]:
            raise _fail(key, node, f"{value!r} is not one of {', '.join(meta['choices'])}")
        if meta.get("path"):
            _check_path(key, node, value)
        return value
    raise _fail(key, node, f"unsupported type {typ}")  # pragma: no cover - model bug


def _check_path(key: str, node: _Node, value: str) -> None:
    try:
        check_relative(value, what="path")
    except PathError as exc:
        raise _fail(key, node, exc.message) from None


def _value(key: str, node: _Node, typ: Any, meta: typing.Mapping[str, Any]) -> Any:
    origin = typing.get_origin(typ)
    if origin is tuple:
        if not isinstance(node.value, list):
            raise _fail(key, node, f"expected a list, got {node.value!r}")
        item_type = typing.get_args(typ)[0]
        return tuple(_value(f"{key}[{i}]", n, item_type, meta) for i, n in enumerate(node.value))
    if origin is types.UnionType:
        raise _fail(key, node, "unsupported optional")  # pragma: no cover
    return _scalar(key, node, typ, meta)


def _build(cls: type, node: _Node, prefix: str) -> Any:
    if not isinstance(node.value, dict):
        raise _fail(prefix.rstrip(".") or "config", node, "expected a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, child in node.value.items():
        full = f"{prefix}{key}"
        if key not in fields:
            raise _fail(full, child, f"unknown key (known: {', '.join(sorted(fields))})")
        kwargs[key] = _value(full, child, hints[key], fields[key].metadata)
    missing = [
        n for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise _fail(prefix.rstrip(".") or "config", node, f"missing required key(s): {', '.join(missing)}")
    return cls(**kwargs)


def _agencies(node: _Node | None) -> tuple[AgencyConfig, ...]:
    if node is None or not isinstance(node.value, list) or not node.value:
        line = node.line if node else 1
        raise ConfigError(f"agencies: line {line}: declare at least one agency (a list of mappings)")
    out: list[AgencyConfig] = []
    for i, item in enumerate(node.value):
        agency = _build(AgencyConfig, item, f"agencies[{i}].")
        try:
            check_agency_id(agency.agency_id)
        except PathError as exc:
            raise _fail(f"agencies[{i}].agency_id", item, exc.message) from None
        if any(a.agency_id == agency.agency_id for a in out):
            raise _fail(f"agencies[{i}].agency_id", item, f"duplicate agency {agency.agency_id!r}")
        out.append(agency)
    return tuple(out)


def parse_config(text: str, *, data_root: Path, source: Path | None = None) -> Config:
    root = _parse_yaml(text, str(source or "<config>"))
    if not isinstance(root.value, dict):
        raise _fail("config", root, "the top level must be a mapping")
    known = set(SECTIONS) | TOP_SCALARS | {"agencies"}
    kwargs: dict[str, Any] = {}
    for key, child in root.value.items():
        if key not in known:
            raise _fail(key, child, f"unknown key (known: {', '.join(sorted(known))})")
        if key in SECTIONS:
            kwargs[key] = _build(SECTIONS[key], child, f"{key}.")
    if "version" in root.value and root.value["version"].value != 1:
        raise _fail("version", root.value["version"], "only version 1 is supported")
    if "shutdown_timeout_s" in root.value:
        kwargs["shutdown_timeout_s"] = _scalar(
            "shutdown_timeout_s", root.value["shutdown_timeout_s"], float, {"min": 1, "max": 3600}
        )
    agencies = _agencies(root.value.get("agencies"))
    cfg = Config(data_root=data_root, source=source, agencies=agencies, **kwargs)
    _cross_checks(cfg, root)
    return cfg


def _cross_checks(cfg: Config, root: _Node) -> None:
    agent = cfg.agent
    if agent.enabled:
        node = root.value["agent"]
        if cfg.agency(agent.agency_id) is None:
            raise _fail("agent.agency_id", node, f"{agent.agency_id!r} is not a declared agency")
        if not agent.command:
            raise _fail("agent.command", node, "the agent command is empty")
        if not agent.health_url.startswith(("http://127.", "http://localhost", "http://[::1]")):
            raise _fail("agent.health_url", node, "the health URL must be on loopback")


def data_root_for(config_path: Path, override: str | None = None) -> Path:
    """The data root: --data-root, else $KORA_DATA_ROOT, else $STATE_DIRECTORY, else the config's folder."""
    for candidate in (override, os.environ.get("KORA_DATA_ROOT"), os.environ.get("STATE_DIRECTORY")):
        if candidate:
            return Path(candidate.split(":")[0]).resolve()
    return config_path.resolve().parent


def load_config(path: Path, *, data_root: Path | None = None) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file", hint="see etc/koradaemon.example.yaml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc}") from exc
    return parse_config(text, data_root=data_root or data_root_for(path), source=path)
