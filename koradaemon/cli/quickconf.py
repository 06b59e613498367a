"""What a CLI call needs from the config to reach the daemon, read without importing yaml.

Importing PyYAML and building the frozen config costs more than the rest of a ``search`` call.
The client only needs ``control.socket``, ``control.tokens_dir`` and the agency ids, so this reads
a plain subset of YAML: block mappings and lists, flow lists and mappings of scalars, quoted and
plain strings, comments. Anything else (anchors, aliases, tags, block scalars, odd indentation)
returns None and the caller loads the config in full, which also reports every error. Whatever
this reader returns, the full parser would read the same way for those keys.
"""

from __future__ import annotations

import os
import re

_PLAIN = re.compile(r"[A-Za-z0-9_./-][A-Za-z0-9_./ :+,@-]*")
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):(?:\s+|$)(.*)")
_SAFE_REL = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
_AGENCY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_SCALAR = re.compile(r"[^,\[\]{}:]+(?::[^\s,\[\]{}][^,\[\]{}:]*)*")


class _Unsupported(Exception):
    pass


class ClientConf:
    """The client's view of the config; paths absolute, nothing created."""

    __slots__ = ("agencies", "data_root", "socket", "source", "tokens_dir")

    def __init__(self, source: str, data_root: str, socket: str, tokens_dir: str, agencies: list[str]) -> None:
        self.source = source
        self.data_root = data_root
        self.socket = socket
        self.tokens_dir = tokens_dir
        self.agencies = agencies

    def socket_path(self) -> str:
        runtime = runtime_dir(self.data_root)
        return os.path.join(runtime, "koradaemon.sock") if runtime else os.path.join(self.data_root, self.socket)

    def tokens_path(self) -> str:
        runtime = runtime_dir(self.data_root)
        return os.path.join(runtime, "tokens") if runtime else os.path.join(self.data_root, self.tokens_dir)


def runtime_dir(data_root: str) -> str | None:
    """Where a service's socket and tokens are: $KORA_RUNTIME_DIR / $RUNTIME_DIRECTORY, else, for the
    standard data roots, the runtime folder systemd gives the unit (/run/koradaemon for the system
    unit, $XDG_RUNTIME_DIR/koradaemon for the user unit) when it exists."""
    value = os.environ.get("KORA_RUNTIME_DIR") or os.environ.get("RUNTIME_DIRECTORY")
    if value:
        return value.split(":")[0]
    from . import locate

    if data_root == locate.SYSTEM_DATA_ROOT:
        candidate: str | None = os.sep + os.path.join("run", "koradaemon")
    elif data_root == locate.user_data_root() and os.environ.get("XDG_RUNTIME_DIR"):
        candidate = os.path.join(os.environ["XDG_RUNTIME_DIR"], "koradaemon")
    else:
        candidate = None
    return candidate if candidate and os.path.isdir(candidate) else None


def read(path: str, data_root: str) -> ClientConf | None:
    """The client view of ``path``, or None when the file is outside the plain subset (load it in full)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(1 << 20)
        doc = parse(text)
    except (OSError, UnicodeDecodeError, _Unsupported, RecursionError):
        return None
    control = doc.get("control", {})
    agencies = doc.get("agencies")
    if not isinstance(control, dict) or not isinstance(agencies, list) or not agencies:
        return None
    socket = control.get("socket", "run/koradaemon.sock")
    tokens = control.get("tokens_dir", "run/tokens")
    ids = [a.get("agency_id") if isinstance(a, dict) else None for a in agencies]
    if not all(isinstance(s, str) and _SAFE_REL.fullmatch(s) and ".." not in s.split("/") for s in (socket, tokens)):
        return None
    if not all(isinstance(i, str) and _AGENCY.fullmatch(i) for i in ids) or len(set(ids)) != len(ids):
        return None
    return ClientConf(path, data_root, str(socket), str(tokens), [str(i) for i in ids])


def parse(text: str) -> dict[str, object]:
    """Parse the plain subset into dicts, lists and strings (raises _Unsupported otherwise)."""
    lines = list(_logical_lines(text))
    doc, rest = _block(lines, 0, 0)
    if rest != len(lines) or not isinstance(doc, dict):
        raise _Unsupported("structure")
    return doc


def _strip_comment(line: str) -> str:
    out, quote = [], ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            break
        elif ch in "&*!|>%@`\t\\":
            raise _Unsupported(ch)
        out.append(ch)
    if quote:
        raise _Unsupported("multi-line quote")
    return "".join(out).rstrip()


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(indent, content) per line, flow collections spread over lines joined into one."""
    out: list[tuple[int, str]] = []
    pending, indent, depth = "", 0, 0
    for raw in text.splitlines():
        if raw.strip() in ("---", "...") or raw.startswith("%"):
            raise _Unsupported("document markers")
        line = _strip_comment(raw)
        if not line.strip():
            continue
        if depth == 0:
            indent, pending = len(line) - len(line.lstrip(" ")), line.strip()
        else:
            pending += " " + line.strip()
        depth = pending.count("[") + pending.count("{") - pending.count("]") - pending.count("}")
        if depth < 0:
            raise _Unsupported("brackets")
        if depth == 0:
            out.append((indent, pending))
    if depth:
        raise _Unsupported("unclosed flow collection")
    return out


def _block(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[object, int]:
    if i >= len(lines):
        raise _Unsupported("empty block")
    if lines[i][1].startswith("- ") or lines[i][1] == "-":
        return _seq(lines, i, lines[i][0])
    return _map(lines, i, lines[i][0])


def _map(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[dict[str, object], int]:
    out: dict[str, object] = {}
    while i < len(lines) and lines[i][0] == indent and not lines[i][1].startswith("-"):
        m = _KEY.fullmatch(lines[i][1])
        if not m or m.group(1) in out:
            raise _Unsupported("key")
        key, rest = m.group(1), m.group(2).strip()
        i += 1
        if rest:
            out[key] = _flow(rest)
        elif i < len(lines) and (lines[i][0] > indent or (lines[i][0] == indent and lines[i][1].startswith("-"))):
            out[key], i = _block(lines, i, lines[i][0])
        else:
            out[key] = None
    if i < len(lines) and lines[i][0] > indent:
        raise _Unsupported("indentation")
    return out, i


def _seq(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[list[object], int]:
    out: list[object] = []
    while i < len(lines) and lines[i][0] == indent and (lines[i][1].startswith("- ") or lines[i][1] == "-"):
        body = lines[i][1][1:].lstrip(" ")
        inner = indent + len(lines[i][1]) - len(body)
        if not body:
            raise _Unsupported("nested block in a list")
        if _KEY.fullmatch(body):  # "- key: value" opens a mapping indented at the key
            sub = [(inner, body), *lines[i + 1:]]
            item, used = _map(sub, 0, inner)
            out.append(item)
            i += used
        else:
            out.append(_flow(body))
            i += 1
    return out, i


def _flow(text: str) -> object:
    value, pos = _flow_value(text, 0)
    if text[pos:].strip():
        raise _Unsupported("trailing text")
    return value


def _flow_value(text: str, pos: int) -> tuple[object, int]:
    while pos < len(text) and text[pos] == " ":
        pos += 1
    if pos >= len(text):
        raise _Unsupported("missing value")
    ch = text[pos]
    if ch in "[{":
        close = "]" if ch == "[" else "}"
        items: list[object] = []
        mapping: dict[str, object] = {}
        pos += 1
        while True:
            while pos < len(text) and text[pos] == " ":
                pos += 1
            if pos < len(text) and text[pos] == close:
                return (items if ch == "[" else mapping), pos + 1
            item, pos = _flow_value(text, pos)
            if ch == "{":
                if not isinstance(item, str) or pos >= len(text) or text[pos] != ":" or item in mapping:
                    raise _Unsupported("flow mapping")
                mapping[item], pos = _flow_value(text, pos + 1)
            else:
                items.append(item)
            while pos < len(text) and text[pos] == " ":
                pos += 1
            if pos < len(text) and text[pos] == ",":
                pos += 1
            elif pos >= len(text) or text[pos] != close:
                raise _Unsupported("flow separator")
    if ch in "'\"":
        end = text.find(ch, pos + 1)
        if end < 0 or (ch == "'" and text[end + 1:end + 2] == "'"):
            raise _Unsupported("quote")
        return text[pos + 1:end], end + 1
    m = _SCALAR.match(text, pos)
    if not m:
        raise _Unsupported("scalar")
    value = m.group(0).rstrip()
    if not _PLAIN.fullmatch(value):
        raise _Unsupported("plain scalar")
    return value, pos + len(m.group(0))
