"""Search results for people: grouped by file, line numbers, highlights, safe paths.

Highlights are coloured on a terminal; otherwise the matched text is wrapped in « and », and a
literal «, » or backslash inside a snippet is escaped with a backslash, so the markers are never
ambiguous. Fields the daemon does not send (line numbers, highlight ranges, totals) are left out.
"""

from __future__ import annotations

import os
import sys

from .text import escape

TYPE_CHECKING = False  # typing is not imported at run time: this module is on every CLI call
if TYPE_CHECKING:
    from typing import Any

OPEN, CLOSE = "«", "»"
COLOR_OPEN, COLOR_CLOSE = "\x1b[1;31m", "\x1b[0m"


def use_color(choice: str) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


def render_search(result: dict[str, Any], *, offset: int, color: bool) -> str:
    hits = result.get("hits", [])
    lines = [_header(result, hits, offset)]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for h in hits:
        groups.setdefault((str(h.get("root", "")), str(h.get("path", ""))), []).append(h)
    for (root, path), group in groups.items():
        where = escape(f"{root}/{path}" if root else path)
        lines.append(f"\x1b[1m{where}{COLOR_CLOSE}" if color else where)
        for h in group:
            lines.append(f"  {_lines(h):>9}  {_snippet(h, color)}")
            lines.append(f"  {'':>9}  ref {where}@{h.get('offset')}+{h.get('length')}{_score(h)}")
    return "\n".join(lines)


def _header(result: dict[str, Any], hits: list[dict[str, Any]], offset: int) -> str:
    total = result.get("total")
    if not hits:
        return "no matches" if not offset else f"no matches after the first {offset}"
    shown = f"{offset + 1}-{offset + len(hits)}"
    if isinstance(total, int):
        estimate = result.get("total_estimate") or result.get("estimate") or result.get("total_exact") is False
        return f"{'about ' if estimate else ''}{total} matching chunks; showing {shown}"
    return f"showing {shown}"


def _lines(h: dict[str, Any]) -> str:
    if isinstance(h.get("match_line"), int):  # the line of the first match: 'show ROOT/PATH:LINE' goes there
        return f"L{h['match_line']}"
    start, end = h.get("line_start"), h.get("line_end")
    if isinstance(start, int):
        return f"L{start}" if not isinstance(end, int) or end == start else f"L{start}-{end}"
    return ""


def _score(h: dict[str, Any]) -> str:
    s = h.get("score")
    if not isinstance(s, int | float):
        return ""
    s = abs(float(s))
    return f"  score {s:.3f}" if s >= 0.001 or s == 0 else f"  score {s:.2e}"


def _snippet(h: dict[str, Any], color: bool) -> str:
    if h.get("stale") is True:  # the file changed since indexing: no text to show
        return "(stale: the file changed since it was indexed)"
    raw = str(h.get("snippet", ""))
    ranges = h.get("highlights")
    if isinstance(ranges, list) and ranges:
        return _marked(raw, ranges, color).strip()
    return _plain(raw).strip()


def _marked(text: str, ranges: list[Any], color: bool) -> str:
    """Escape ``text`` and wrap each [start, end) range (character offsets) in markers."""
    opener, closer = (COLOR_OPEN, COLOR_CLOSE) if color else (OPEN, CLOSE)
    out, pos = [], 0
    for r in sorted(r for r in ranges if isinstance(r, list | tuple) and len(r) == 2):
        start, end = max(int(r[0]), pos), min(int(r[1]), len(text))
        if start >= end:
            continue
        out.append(_plain(text[pos:start]))
        out.append(opener + _plain(text[start:end]) + closer)
        pos = end
    out.append(_plain(text[pos:]))
    return "".join(out)


def _plain(text: str) -> str:
    return escape(squeeze(text), extra=OPEN + CLOSE)


def squeeze(text: str) -> str:
    """Each run of whitespace as one space, at the ends too: ``re.sub(r"\\s+", " ", text)`` without ``re``
    (``str.split`` and ``\\s`` know the same whitespace)."""
    words = text.split()
    if not words:
        return " " if text else ""
    return (" " if text[0].isspace() else "") + " ".join(words) + (" " if text[-1].isspace() else "")
