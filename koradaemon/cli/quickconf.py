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

# The patterns below are matched with str methods: ``re`` costs as much to import as the rest of a call.
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_PLAIN_FIRST = _ALNUM | frozenset("_./-")
_PLAIN_REST = _PLAIN_FIRST | frozenset(" :+,@")
_SAFE_CHARS = _ALNUM | frozenset("_.-")
_AGENCY_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz")
_AGENCY_REST = _AGENCY_FIRST | frozenset("0123456789_-")
_FLOW = ",[]{}"


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
    if not all(isinstance(s, str) and safe_rel(s) and ".." not in s.split("/") for s in (socket, tokens)):
        return None
    if not all(isinstance(i, str) and agency_id(i) for i in ids) or len(set(ids)) != len(ids):
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
        kv = key_value(lines[i][1])
        if kv is None or kv[0] in out:
            raise _Unsupported("key")
        key, rest = kv[0], kv[1].strip()
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
        if key_value(body) is not None:  # "- key: value" opens a mapping indented at the key
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
    end = scalar_end(text, pos)
    if end == pos:
        raise _Unsupported("scalar")
    value = text[pos:end].rstrip()
    if not plain(value):
        raise _Unsupported("plain scalar")
    return value, end


# -- the patterns ------------------------------------------------------------------------------
def key_value(line: str) -> tuple[str, str] | None:
    """``re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*):(?:\\s+|$)(.*)", line)``'s two groups (no newline in line)."""
    key, colon, rest = line.partition(":")
    if not colon or not (key.isascii() and key.isidentifier()) or (rest and not rest[0].isspace()):
        return None
    return key, rest.lstrip()


def scalar_end(text: str, pos: int) -> int:
    """Where ``re.compile(r"[^,\\[\\]{}:]+(?::[^\\s,\\[\\]{}][^,\\[\\]{}:]*)*").match(text, pos)`` ends
    (``pos``: no match): a run without ``,[]{}:``; then, while a ":" is followed by a character other
    than whitespace and ``,[]{}``, that ":", the character and the next such run."""
    n, i = len(text), pos
    while i < n and text[i] not in _FLOW and text[i] != ":":
        i += 1
    if i == pos:
        return pos
    while i + 1 < n and text[i] == ":" and not text[i + 1].isspace() and text[i + 1] not in _FLOW:
        i += 2
        while i < n and text[i] not in _FLOW and text[i] != ":":
            i += 1
    return i


def plain(value: str) -> bool:
    """``re.fullmatch(r"[A-Za-z0-9_./-][A-Za-z0-9_./ :+,@-]*", value)``."""
    return bool(value) and value[0] in _PLAIN_FIRST and all(c in _PLAIN_REST for c in value)


def safe_rel(path: str) -> bool:
    """``re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*", path)``."""
    return all(part and all(c in _SAFE_CHARS for c in part) for part in path.split("/"))


def agency_id(text: str) -> bool:
    """``re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", text)``."""
    return 0 < len(text) <= 63 and text[0] in _AGENCY_FIRST and all(c in _AGENCY_REST for c in text)
