"""Snippets: a small window of a hit's text around its first match, with highlight ranges."""

from __future__ import annotations

import re
import string
from collections.abc import Callable

from .query import Query, fold_table

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

    def ranges(raw: str) -> list[tuple[int, int]]:
        if not pattern:
            return []
        # Accented letters are folded to their base letter (one character each, so positions
        # hold) inside the window only: 'cafe' marks 'café' without folding the whole chunk.
        hay = raw if raw.isascii() else raw.translate(_FOLD)
        return [m.span() for m in pattern.finditer(hay) if m.end() > m.start()]

    return _cut(text, first.start() if first else 0, ranges, width)


def _cut(text: str, at: int, ranges: Callable[[str], list[tuple[int, int]]],
         width: int) -> tuple[str, tuple[tuple[int, int], ...], int]:
    start = max(0, at - SNIPPET_BEFORE)
    if start:
        space = text.find(" ", start, at)
        start = space + 1 if space >= 0 else start
    end = min(len(text), start + width)
    lead = "…" if start else ""
    raw = text[start:end]
    marks = tuple((a + len(lead), b + len(lead)) for a, b in ranges(raw))
    window = _CONTROL.sub(" ", raw)
    return lead + window + ("…" if end < len(text) else ""), marks, at


_ALNUM = frozenset(string.ascii_letters + string.digits)
_LOWER = frozenset(string.ascii_lowercase)
_LOWER_DIGIT = frozenset(string.ascii_lowercase + string.digits)


class Highlighter:
    """A query's snippet matching. For an ASCII text and a query of plain words, the matches of
    its regular expressions (query.py: whole words, camelCase parts, phrases) are found by
    string search and character tests, with no regular expression to compile for each query
    (compiling one costs more than the rest of a selective search); otherwise by the patterns,
    compiled on first need."""

    def __init__(self, q: Query) -> None:
        self.q = q
        specs = [w for w in q.words if w is not None]
        self.words = specs if len(specs) == len(q.words) and all(w[0].isascii() for w in specs) else None
        self.plain = self.words is not None and all(all(t.isascii() for t in ws) for ws, _ in q.phrases)

    def snippet(self, text: str) -> tuple[str, tuple[tuple[int, int], ...], int]:
        q = self.q
        if self.plain and text.isascii():
            low = text.lower()
            at = min((p for p in (_phrase_at(text, low, ws, prefix) for ws, prefix in q.phrases) if p >= 0),
                     default=-1)
            if at < 0:
                at = min((p for p in (_next_word(text, low, w, 0)[0] for w in self.words or []) if p >= 0),
                         default=0)
            return _cut(text, at, self._ranges, SNIPPET_CHARS)
        pattern, anchor = pattern_for(tuple(q.highlight)), pattern_for(tuple(q.anchor))
        out = make_snippet(text, pattern, anchor, needles=tuple(q.needles), anchor_needles=tuple(q.anchor_needles))
        if not out[1] and not text.isascii():  # 'cafe' in 'café': the accent-aware patterns
            out = make_snippet(text, pattern_for(tuple(q.highlight_accented)), pattern_for(tuple(q.anchor_accented)))
        return out

    def _ranges(self, raw: str) -> list[tuple[int, int]]:
        """The non-overlapping leftmost matches, the first word in query order winning a tie
        (the alternation's ``finditer``)."""
        words = self.words or []
        low = raw.lower()
        out: list[tuple[int, int]] = []
        if len(words) == 1:  # one word: its matches one after another
            pos, end = _next_word(raw, low, words[0], 0)
            while pos >= 0:
                out.append((pos, end))
                pos, end = _next_word(raw, low, words[0], end)
            return out
        nexts = [_next_word(raw, low, w, 0) for w in words]
        while True:
            found = [x for x in nexts if x[0] >= 0]
            if not found:
                return out
            pos = min(p for p, _ in found)
            end = next(e for p, e in nexts if p == pos)
            out.append((pos, end))
            nexts = [_next_word(raw, low, w, end) if 0 <= x[0] < end else x for w, x in zip(words, nexts, strict=True)]


def _next_word(s: str, low: str, word: tuple[str, bool, bool], i: int) -> tuple[int, int]:
    """(start, end) of the first match of one plain word at or after ``i``, else (-1, -1)."""
    w, prefix, camel = word
    n, k = len(s), len(w)
    i = low.find(w, i)
    while i >= 0:
        end = i + k
        if (i == 0 or s[i - 1] not in _ALNUM) and (prefix or end >= n or s[end] not in _ALNUM):
            return i, end
        if (camel and i > 0 and s[i - 1] in _LOWER_DIGIT and s[i] == w[0].upper() and s[i + 1 : end] == w[1:]
                and (prefix or end >= n or s[end] not in _LOWER)):
            return i, end
        i = low.find(w, i + 1)
    return -1, -1


def _phrase_at(s: str, low: str, words: tuple[str, ...], prefix: bool) -> int:
    """Start of the first match of a phrase: whole words in order, separated by non-alphanumerics."""
    n, last = len(s), len(words) - 1
    i = low.find(words[0])
    while i >= 0:
        pos, ok = i, i == 0 or s[i - 1] not in _ALNUM
        for k, w in enumerate(words):
            if not ok or not low.startswith(w, pos):
                ok = False
                break
            pos += len(w)
            if k < last:
                j = pos
                while j < n and s[j] not in _ALNUM:
                    j += 1
                ok, pos = j > pos, j
        if ok and (prefix or pos >= n or s[pos] not in _ALNUM):
            return i
        i = low.find(words[0], i + 1)
    return -1


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FOLD = {ord(k): v for k, v in fold_table().items()}
