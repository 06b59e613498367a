"""Bounded YAML reading for the configuration: a tree of values that remember their line.

The loader is PyYAML's SafeLoader with limits, so no input can make it slow or crash it: anchors
and aliases are refused (no alias bombs), nesting, node count, scalar length and number size are
capped, and every problem, whatever raised it, becomes a :class:`ConfigError` naming the key and
its line.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import yaml

from .errors import ConfigError

MAX_CONFIG_BYTES = 256 * 1024
MAX_DEPTH = 16
MAX_NODES = 2_000
MAX_SCALAR_CHARS = 4096
MAX_NUMBER_CHARS = 32
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq")}


class Node:
    """A YAML value with the line it came from (1-based). Mappings hold ``dict[str, Node]``,
    sequences ``list[Node]``."""

    __slots__ = ("line", "value")

    def __init__(self, value: Any, line: int) -> None:
        self.value = value
        self.line = line


class _Bounds(yaml.composer.Composer, yaml.constructor.SafeConstructor):
    """PyYAML's composer (Python) with limits: refuses anchors and aliases, caps depth, node count
    and scalar length, and keeps the key path for messages. Placed before the parser in the MRO,
    so its ``get_single_node`` (not libyaml's C composer) builds the tree."""

    def _bounds_init(self) -> None:
        self.kora_path: list[str] = []
        self.kora_nodes = 0

    def where(self) -> str:
        out = ""
        for seg in self.kora_path:
            out += seg if seg.startswith("[") or not out else "." + seg
        return out or "config"

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()  # type: ignore[attr-defined]
        if isinstance(index, yaml.ScalarNode):
            self.kora_path.append(str(index.value)[:64])
        elif isinstance(index, int):
            self.kora_path.append(f"[{index}]")
        else:
            self.kora_path.append("")  # a mapping key, or the document: reported as its parent
        try:
            self._check(event)
            node: yaml.Node | None = super().compose_node(parent, index)  # type: ignore[no-untyped-call, unused-ignore]
            if node is None:  # pragma: no cover - the parser always yields a node event here
                raise self.fail(event, "a value is missing")
            return node
        finally:
            self.kora_path.pop()

    def _check(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.AliasEvent):
            raise self.fail(event, "YAML aliases (*name) are not allowed in the configuration")
        if getattr(event, "anchor", None) is not None:
            raise self.fail(event, "YAML anchors (&name) are not allowed in the configuration")
        self.kora_nodes += 1
        if self.kora_nodes > MAX_NODES:
            raise self.fail(event, f"more than {MAX_NODES} values in the configuration")
        if len(self.kora_path) > MAX_DEPTH:
            raise self.fail(event, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(event, yaml.ScalarEvent) and len(event.value) > MAX_SCALAR_CHARS:
            raise self.fail(event, f"a value longer than {MAX_SCALAR_CHARS} characters")

    def fail(self, event: yaml.Event, message: str) -> ConfigError:
        return self.fail_at(event.start_mark.line if event.start_mark else -1, message)

    def fail_at(self, line0: int, message: str) -> ConfigError:
        return ConfigError(f"{self.where()}: line {line0 + 1 if line0 >= 0 else '?'}: {message}")


class _PyLoader(_Bounds, yaml.SafeLoader):
    """Pure-Python scanning, when PyYAML was built without libyaml."""

    def __init__(self, text: str) -> None:
        yaml.SafeLoader.__init__(self, text)
        self._bounds_init()

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        # The Python scanner looks ahead while a '[' or '{' may start a key: cap flow nesting here,
        # before tens of thousands of brackets cost quadratic time (the composer's cap comes too late).
        if self.flow_level >= MAX_DEPTH:
            raise ConfigError(f"{self.where()}: line {self.line + 1}: nested deeper than {MAX_DEPTH} levels")
        super().fetch_flow_collection_start(TokenClass)  # type: ignore[no-untyped-call, unused-ignore]


_CParser: Any = getattr(getattr(yaml, "cyaml", None), "CParser", None) if yaml.__with_libyaml__ else None
if _CParser is not None:

    class _CLoader(_Bounds, _CParser, yaml.resolver.Resolver):  # type: ignore[misc]
        """libyaml reads, scans and parses (C: linear time on any input); composing is _Bounds'."""

        def __init__(self, text: str) -> None:
            _CParser.__init__(self, text)
            yaml.composer.Composer.__init__(self)  # type: ignore[no-untyped-call, unused-ignore]
            yaml.constructor.SafeConstructor.__init__(self)  # type: ignore[no-untyped-call, unused-ignore]
            yaml.resolver.Resolver.__init__(self)  # type: ignore[no-untyped-call, unused-ignore]
            self._bounds_init()


def make_loader(text: str) -> _Bounds:
    """The bounded loader: libyaml's parser when PyYAML has it (its reader reports byte offsets)."""
    return _CLoader(text) if _CParser is not None else _PyLoader(text)


def read_tree(text: str, source: str) -> Node:
    """Parse ``text`` into a :class:`Node` tree; any problem is a :class:`ConfigError`."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: the configuration is larger than {MAX_CONFIG_BYTES // 1024} KiB")
    loader: _Bounds | None = None
    try:
        loader = make_loader(text)  # the reader already refuses control characters: inside the try
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{source}: the configuration is empty", hint="see etc/koradaemon.example.yaml")
        return _convert(node, loader, "")
    except yaml.reader.ReaderError as exc:
        raise ConfigError(_reader_message(text, exc, source)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_message(text, exc, loader, source)) from None
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:  # defensive
        raise ConfigError(f"{source}: malformed YAML: {type(exc).__name__}: {str(exc)[:200]}") from None
    finally:
        if loader is not None:
            loader.dispose()  # type: ignore[attr-defined]


def _reader_message(text: str, exc: yaml.reader.ReaderError, source: str) -> str:
    """A character YAML refuses (NUL, control characters): its line, and the key on that line."""
    pos = exc.position if isinstance(exc.position, int) and exc.position >= 0 else 0
    if _CParser is not None:  # libyaml counts bytes of the UTF-8 encoding
        line = text.encode("utf-8", "surrogatepass")[:pos].count(b"\n") + 1
    else:
        line = text.count("\n", 0, pos) + 1
    what = f"the character U+{exc.character:04X}" if isinstance(exc.character, int) else "a character"
    key = "config"
    if len(text) <= MAX_CONFIG_BYTES:
        clean = "".join(c if c.isprintable() or c in "\n\t" else " " for c in text)
        with contextlib.suppress(ConfigError):
            key = _key_at_line(read_tree(clean, source), line) or key
    return f"{key}: line {line}: {what} is not allowed in YAML ({source})"


def _key_at_line(node: Node, line: int, path: str = "") -> str:
    """The last key (or list item) that starts on ``line``, searching depth first."""
    found = ""
    items: list[tuple[str, Node]] = []
    if isinstance(node.value, dict):
        items = [(f"{path}.{k}" if path else k, v) for k, v in node.value.items()]
    elif isinstance(node.value, list):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(node.value)]
    for sub, child in items:
        if child.line == line:
            found = sub
        if child.line <= line:
            found = _key_at_line(child, line, sub) or found
    return found


def _yaml_message(text: str, exc: yaml.YAMLError, loader: _Bounds | None, source: str) -> str:
    """A syntax error: the key being read (or the key written on that line), its line, the problem."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = str(getattr(exc, "problem", None) or str(exc).splitlines()[0])[:200]
    # libyaml's own nesting cap may be met before ours
    problem = f"nested deeper than {MAX_DEPTH} levels" if "nesting depth" in problem else f"malformed YAML: {problem}"
    if mark is None:
        return f"{source}: {problem}"
    key = loader.where() if loader is not None else "config"
    if key == "config":
        key = _key_written_on(text, mark.line) or key
    return f"{key}: line {mark.line + 1}: {problem} ({source})"


def _key_written_on(text: str, line0: int) -> str:
    lines = text.split("\n", line0 + 1)
    m = re.match(r"\s*(?:-\s+)?([A-Za-z_][A-Za-z0-9_.-]{0,63})\s*:", lines[line0]) if line0 < len(lines) else None
    return m.group(1) if m else ""


def _convert(node: yaml.Node, loader: _Bounds, where: str) -> Node:
    line = node.start_mark.line + 1
    if node.tag not in _TAGS:
        raise ConfigError(f"{where.rstrip('.') or 'config'}: line {line}: unsupported YAML type {node.tag[:80]!r}")
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            key = _scalar(key_node, loader, where.rstrip(".") or "config") if isinstance(
                key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise ConfigError(f"{where.rstrip('.') or 'config'}: line {key_line}: keys must be strings")
            if key in out:
                raise ConfigError(f"{where}{key}: line {key_line}: duplicate key")
            out[key] = _convert(value_node, loader, f"{where}{key}.")
        return Node(out, line)
    if isinstance(node, yaml.SequenceNode):
        base = where.rstrip(".") or "config"
        return Node([_convert(n, loader, f"{base}[{i}].") for i, n in enumerate(node.value)], line)
    return Node(_scalar(node, loader, where.rstrip(".") or "config"), line)


def _scalar(node: yaml.Node, loader: _Bounds, key: str) -> Any:
    line = node.start_mark.line + 1
    if node.tag in (_INT_TAG, _FLOAT_TAG) and len(str(node.value)) > MAX_NUMBER_CHARS:
        raise ConfigError(f"{key}: line {line}: the number is too large")
    try:
        return loader.construct_object(node)  # type: ignore[no-untyped-call, unused-ignore]
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        raise ConfigError(f"{key}: line {line}: cannot read the value: {str(exc).splitlines()[0][:200]}") from None
