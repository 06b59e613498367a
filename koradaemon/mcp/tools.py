"""The MCP tools (``search``, ``read``, ``status``): schemas, input checks and the socket calls behind them.

Independent of the MCP SDK so the rules can be read (and tested) on their own. The agency is fixed when
the server starts; no tool takes an agency, so nothing of another agency is reachable whatever the input.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import KoraError
from ..index import retrieval  # noqa: F401  (registers the "stale" error code for replies)
from ..paths import check_relative

MAX_QUERY_CHARS = 1000
MAX_RESULTS = 50
MAX_WINDOW = 100  # offset + limit: the daemon's own cap on one search
MAX_READ_BYTES = 256 * 1024
DEFAULT_READ_CHARS = 20_000
MAX_READ_CHARS = 200_000
SNIPPET_CHARS = 300
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ROOT = re.compile(r"^[^\x00]{1,4096}$")

Call = Callable[..., dict[str, Any]]


class ToolError(Exception):
    """A tool call the server refuses; reported to the client as an MCP tool error with this message."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    title: str
    description: str
    schema: dict[str, Any]


_REF_PROPS: dict[str, Any] = {
    "root": {"type": "string", "minLength": 1, "maxLength": 4096, "description": "watched root, as in a result"},
    "path": {"type": "string", "minLength": 1, "maxLength": 4096, "description": "file path under the root"},
    "offset": {"type": "integer", "minimum": 0, "description": "byte offset of the chunk"},
    "length": {"type": "integer", "minimum": 0, "maximum": MAX_READ_BYTES, "description": "byte length"},
    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "sha256 of the bytes"},
}

TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "search", "Search memory",
        "Full-text search (BM25) over this agency's indexed files. Returns memory references "
        "(root, path, byte offset, length, sha256, line range, score, short snippet); pass one to 'read'.",
        {"type": "object", "additionalProperties": False, "required": ["query"], "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_CHARS},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS, "default": 10},
            "offset": {"type": "integer", "minimum": 0, "maximum": MAX_WINDOW - 1, "default": 0},
        }},
    ),
    ToolSpec(
        "read", "Read a memory reference",
        "The text behind a reference returned by 'search'. Refused as stale when the file's bytes no "
        f"longer match the reference's sha256. Length at most {MAX_READ_BYTES} bytes; the text is cut "
        "at max_chars.",
        {"type": "object", "additionalProperties": False, "required": ["root", "path", "offset", "length", "sha256"],
         "properties": {**_REF_PROPS, "max_chars": {"type": "integer", "minimum": 1, "maximum": MAX_READ_CHARS,
                                                    "default": DEFAULT_READ_CHARS}}},
    ),
    ToolSpec(
        "status", "Memory status",
        "This agency's index figures, lockdown state, last snapshot and (if it works for this agency) the agent.",
        {"type": "object", "additionalProperties": False, "properties": {}},
    ),
)


def _int(args: Mapping[str, Any], name: str, default: int | None, lo: int, hi: int) -> int:
    value = args.get(name, default)
    if value is None:
        raise ToolError(f"'{name}' is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ToolError(f"'{name}' must be an integer")
    if not lo <= value <= hi:
        raise ToolError(f"'{name}' must be between {lo} and {hi}")
    return value


def _str(args: Mapping[str, Any], name: str, max_chars: int) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise ToolError(f"'{name}' must be a non-empty string")
    if len(value) > max_chars:
        raise ToolError(f"'{name}' is longer than {max_chars} characters")
    if "\x00" in value:
        raise ToolError(f"'{name}' contains a NUL character")
    return value


def _only(args: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise ToolError(f"unknown argument(s): {', '.join(repr(u)[:40] for u in unknown[:5])}")


class MemoryTools:
    """The tools of one agency; ``call(op, agency_id, token, **args)`` is a control-socket call."""

    def __init__(self, call: Call, agency_id: str, token: str) -> None:
        self._call = call
        self.agency_id = agency_id
        self._token = token
        self._lock = threading.Lock()  # one socket connection: one request at a time

    def run(self, name: str, args: Mapping[str, Any] | None) -> dict[str, Any]:
        """Run tool ``name``; raises :class:`ToolError` with a message for anything refused or failed."""
        if args is None:
            args = {}
        if not isinstance(args, Mapping):
            raise ToolError("arguments must be an object")
        handler = {"search": self.search, "read": self.read, "status": self.status}.get(name)
        if handler is None:
            raise ToolError(f"unknown tool {name[:64]!r}")
        try:
            return handler(args)
        except KoraError as exc:
            raise ToolError(f"{exc.code}: {exc.message}") from None

    def _op(self, op: str, **args: Any) -> dict[str, Any]:
        with self._lock:
            return self._call(op, self.agency_id, self._token, **args)

    def search(self, args: Mapping[str, Any]) -> dict[str, Any]:
        _only(args, {"query", "limit", "offset"})
        query = _str(args, "query", MAX_QUERY_CHARS)
        limit = _int(args, "limit", 10, 1, MAX_RESULTS)
        offset = _int(args, "offset", 0, 0, MAX_WINDOW - 1)
        window = min(offset + limit, MAX_WINDOW)
        hits = self._op("search", query=query, limit=window, lines=True).get("hits", [])
        page = hits[offset : offset + limit] if isinstance(hits, list) else []
        return {"query": query, "offset": offset, "limit": limit, "results": [_reference(h) for h in page],
                "more": len(hits) == window and window < MAX_WINDOW}

    def read(self, args: Mapping[str, Any]) -> dict[str, Any]:
        _only(args, {"root", "path", "offset", "length", "sha256", "max_chars"})
        root = _str(args, "root", 4096)
        path = _str(args, "path", 4096)
        try:
            check_relative(path, what="path")
        except KoraError as exc:
            raise ToolError(exc.message) from None
        if not _ROOT.fullmatch(root):
            raise ToolError("'root' is not a root name")
        offset = _int(args, "offset", None, 0, 1 << 62)
        length = _int(args, "length", None, 0, MAX_READ_BYTES)
        sha = args.get("sha256")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise ToolError("'sha256' must be 64 lowercase hex digits")
        max_chars = _int(args, "max_chars", DEFAULT_READ_CHARS, 1, MAX_READ_CHARS)
        got = self._op("get_chunk", root=root, path=path, offset=offset, length=length, sha256=sha, lines=True)
        text = str(got.get("text", ""))
        return {"root": root, "path": path, "offset": offset, "length": length, "sha256": sha,
                "line_start": got.get("line_start"), "line_end": got.get("line_end"),
                "text": text[:max_chars], "truncated": len(text) > max_chars}

    def status(self, args: Mapping[str, Any]) -> dict[str, Any]:
        _only(args, set())
        st = self._op("status")
        mine = st.get("agencies", {}).get(self.agency_id, {})  # only this agency's section is passed on
        out: dict[str, Any] = {"agency_id": self.agency_id, "daemon_ready": bool(st.get("ready"))}
        for key in ("files", "chunks", "bytes", "skipped", "locked", "polling", "last_snapshot", "incomplete"):
            if key in mine:
                out[key] = mine[key]
        agent = st.get("agent")
        if isinstance(agent, dict) and agent.get("agency_id") == self.agency_id:
            out["agent"] = {k: agent[k] for k in ("state", "degraded", "degraded_modes", "restarts", "ready_for_s")
                            if k in agent}
        return out


def _reference(hit: Any) -> dict[str, Any]:
    if not isinstance(hit, dict):
        raise ToolError("the daemon sent a malformed search result")
    snippet = " ".join(str(hit.get("snippet", "")).split())
    return {"root": hit.get("root"), "path": hit.get("path"), "offset": hit.get("offset"),
            "length": hit.get("length"), "sha256": hit.get("sha256"), "line_start": hit.get("line_start"),
            "line_end": hit.get("line_end"), "score": hit.get("score"),
            "snippet": snippet[:SNIPPET_CHARS], **({"stale": True} if hit.get("stale") else {})}
