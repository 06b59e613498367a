"""Snippets: a small window of a hit's text around its first match, with highlight ranges."""

from __future__ import annotations

import re

from .query import fold_table

SNIPPET_CHARS = 160
SNIPPET_BEFORE = 50

_PATTERNS: dict[tuple[str, ...], re.Pattern[str] | None] = {}


def pattern_for(sources: tuple[str, ...]) -> re.Pattern[str] | None:
    """One case-insensitive pattern for any of ``sources`` (compiled once per set of sources)."""
    if sources not in _PATTERNS:
        if len(_PATTERNS) > 256:
            _PATTERNS.clear()
        try:
            _PATTERNS[sources] = re.compile("|".join(sources), re.I) if sources else None
        except re.error:
            _PATTERNS[sources] = None
    return _PATTERNS[sources]


def first_match(text: str, pattern: re.Pattern[str], needles: tuple[str, ...] = ()) -> re.Match[str] | None:
    """``pattern.search(text)``, faster where every match of ``pattern`` starts with one of the
    lowercase ASCII ``needles``: in an ASCII text, the needles are found at C speed in the
    lowercased text and the pattern is only tried there (a regular expression with lookbehinds
    tries every position of a 50 KB chunk at a third of a microsecond each)."""
    if not needles or not text.isascii() or not all(n.isascii() for n in needles):
        return pattern.search(text)
    low = text.lower()
    best: re.Match[str] | None = None
    for needle in needles:
        i = low.find(needle)
        while i >= 0 and (best is None or i < best.start()):
            m = pattern.match(text, i)
            if m:
                best = m
                break
            i = low.find(needle, i + 1)
    return best


def make_snippet(text: str, pattern: re.Pattern[str] | None, anchor: re.Pattern[str] | None = None,
                 width: int = SNIPPET_CHARS, needles: tuple[str, ...] = (),
                 anchor_needles: tuple[str, ...] = ()) -> tuple[str, tuple[tuple[int, int], ...], int]:
    """(snippet, highlight ranges [start, end) in the snippet, position of the first match in ``text``).

    The window starts a little before the first phrase match (else the first highlight), at a
    word boundary when one is near, and spans ``width`` characters; control characters are
    shown as spaces (same length). ``needles``/``anchor_needles``: see :func:`first_match`.
    """
    first = first_match(text, anchor, anchor_needles) if anchor else None  # a phrase, where the query has one
    if first is None and pattern:
        first = first_match(text, pattern, needles)
    at = first.start() if first else 0
    start = max(0, at - SNIPPET_BEFORE)
    if start:
        space = text.find(" ", start, at)
        start = space + 1 if space >= 0 else start
    end = min(len(text), start + width)
    ranges: list[tuple[int, int]] = []
    lead = "…" if start else ""
    raw = text[start:end]
    if pattern:
        # Accented letters are folded to their base letter (one character each, so positions
        # hold) inside the window only: 'cafe' marks 'café' without folding the whole chunk.
        hay = raw if raw.isascii() else raw.translate(_FOLD)
        for m in pattern.finditer(hay):
            if m.end() > m.start():
                ranges.append((m.start() + len(lead), m.end() + len(lead)))
    window = _CONTROL.sub(" ", raw)
    return lead + window + ("…" if end < len(text) else ""), tuple(ranges), at


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FOLD = {ord(k): v for k, v in fold_table().items()}
