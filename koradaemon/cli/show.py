"""`koradaemon show`: a hit's chunk (``ROOT/PATH@OFFSET+LENGTH``) or a file's indexed text (``ROOT/PATH[:LINE]``).

The text is read through ``get_chunk`` (an mmap slice checked against the indexed sha256), so a file
that changed since it was indexed is reported stale, never shown wrong.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from ..errors import DataError, UsageError
from ..index.listing import split_root

MAX_WHOLE_FILE = 32 << 20
_REF = re.compile(r"(?P<loc>.+)@(?P<off>\d+)\+(?P<len>\d+)(?:#(?P<sha>[0-9a-f]{64}))?")
_LINE = re.compile(r"(?P<loc>.+):(?P<line>\d+)")


class Target:
    __slots__ = ("length", "line", "location", "offset", "path", "root", "sha256")

    def __init__(self, location: str, *, offset: int | None = None, length: int | None = None,
                 sha256: str | None = None, line: int | None = None) -> None:
        self.location, self.offset, self.length, self.sha256, self.line = location, offset, length, sha256, line
        self.root = ""
        self.path = ""


def parse_target(text: str, roots: tuple[str, ...] | None = None) -> Target:
    m = _REF.fullmatch(text)
    if m:
        t = Target(m["loc"], offset=int(m["off"]), length=int(m["len"]), sha256=m["sha"])
    elif (m := _LINE.fullmatch(text)) is not None:
        if int(m["line"]) < 1:
            raise UsageError("line numbers start at 1")
        t = Target(m["loc"], line=int(m["line"]))
    else:
        t = Target(text)
    if roots is not None:
        t.root, t.path = split_root(t.location, roots)
    return t


def render_result(target: Target, entry: dict[str, Any], get_chunk: Callable[[dict[str, Any]], dict[str, Any]],
                  lines: int) -> dict[str, Any]:
    """Fetch what ``target`` names; ``entry`` is the file's index row (with chunk_refs) or {} for a bare REF."""
    base = {"root": target.root, "path": target.path}
    if target.offset is not None:
        sha = target.sha256 or _chunk_sha(entry, target)
        ref = {**base, "offset": target.offset, "length": target.length, "sha256": sha}
        return {**get_chunk(ref), "kind": "chunk"}
    if not entry:
        raise DataError(f"{target.root}/{target.path} is not in the index",
                        hint="'koradaemon files' lists what is indexed")
    if entry.get("skipped"):
        raise DataError(f"{target.root}/{target.path} was skipped when indexing: {entry['skipped']}")
    if entry["size"] > MAX_WHOLE_FILE:
        raise UsageError(f"{target.root}/{target.path} is {entry['size']} bytes: too large to print whole",
                         hint="name a chunk: ROOT/PATH@OFFSET+LENGTH from 'koradaemon search'")
    text = get_chunk({**base, "offset": 0, "length": entry["size"], "sha256": entry["sha256"]})["text"]
    if target.line is None:
        return {**base, "kind": "file", "line_start": 1, "text": text}
    all_lines = text.splitlines(keepends=True)
    if target.line > len(all_lines):
        raise UsageError(f"{target.root}/{target.path} has {len(all_lines)} lines, not {target.line}")
    part = all_lines[target.line - 1: target.line - 1 + lines]
    return {**base, "kind": "lines", "line_start": target.line, "text": "".join(part)}


def _chunk_sha(entry: dict[str, Any], target: Target) -> str:
    for c in entry.get("chunk_refs", []):
        if c["offset"] == target.offset and c["length"] == target.length:
            return str(c["sha256"])
    raise DataError(f"no indexed chunk at {target.location}@{target.offset}+{target.length}",
                    hint="take the reference from 'koradaemon search' again: the file may have changed")


def show_online(client: Any, agency: str, token: str, args: argparse.Namespace) -> dict[str, Any]:
    target = parse_target(args.target)
    entry = client.call("files", agency, token, path=target.location)
    target.root, target.path = entry.get("root", ""), entry.get("path", "")
    file_row = entry.get("file") or {}

    def get_chunk(ref: dict[str, Any]) -> dict[str, Any]:
        return dict(client.call("get_chunk", agency, token, **ref))

    return render_result(target, file_row, get_chunk, args.lines)
