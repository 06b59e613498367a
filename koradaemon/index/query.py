"""The search query language: what a person types → an FTS5 expression (pure functions).

Grammar (docs/search.md): words are ANDed; ``"a phrase"``; ``prefix*``; ``-exclude``;
``a OR b``; ``path:TEXT`` and ``ext:EXT`` filters. Punctuation is part of the words
(``foo.bar``, ``x-ray``, ``C++``, ``alice@example.com``); an unbalanced quote is closed.
Every token handed to FTS5 is quoted, so no input can reach FTS5's own syntax, and the
only error is :class:`~koradaemon.errors.QueryError` with one of the messages below.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import cache

from ..errors import QueryError
from .fts import CJK_RUN, EMOJI_CHAR, SYMWORD, cjk_grams, emoji_token, sign_word

MIN_PREFIX = 2  # characters before '*': 'a*' would expand to most of the vocabulary
MAX_PREFIXES = 8  # prefix terms per query
MAX_QUERY_CHARS = 2000
MAX_UNITS = 64  # quoted phrases in the FTS5 expression
TOKEN = re.compile(r"[^\W_]+")
FILTER = re.compile(r"(?i)(path|ext):(.*)", re.S)
FILTER_KEY = re.compile(r"(?i)(path|ext):")


@dataclass
class Query:
    """A parsed query: the FTS5 expression, highlight patterns and path filters."""

    fts: str
    highlight: list[str] = field(default_factory=list)  # regex sources, case-insensitive
    anchor: list[str] = field(default_factory=list)  # phrases: the snippet is centred on these first
    # The same with accented forms of each letter (unicode61 removes diacritics): slower to
    # compile, so used only for a text the plain patterns find nothing in.
    highlight_accented: list[str] = field(default_factory=list)
    anchor_accented: list[str] = field(default_factory=list)
    # Lowercase literals that every match of ``highlight`` (``anchor``) starts with: the
    # snippet finds its first match by plain string search (snippets.first_match).
    needles: list[str] = field(default_factory=list)
    anchor_needles: list[str] = field(default_factory=list)
    # The same matches described without regular expressions, for ASCII texts (snippets.Highlighter):
    # per ``highlight`` entry (lowercase word, prefix, camelCase part allowed), None for a sign
    # word, CJK or emoji; per ``anchor`` entry (lowercase words, prefix).
    words: list[tuple[str, bool, bool] | None] = field(default_factory=list)
    phrases: list[tuple[tuple[str, ...], bool]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    not_paths: list[str] = field(default_factory=list)
    exts: list[str] = field(default_factory=list)
    not_exts: list[str] = field(default_factory=list)
    raw: bool = False
    # The quoted units of ``fts`` in FTS5's phrase order, each with True when it is excluded
    # (``-word``); ``has_or`` when some item has alternatives. Empty for raw queries.
    units: list[tuple[str, bool]] = field(default_factory=list)
    has_or: bool = False

    @property
    def filtered(self) -> bool:
        return bool(self.paths or self.not_paths or self.exts or self.not_exts)


@dataclass
class _Item:
    units: list[str]
    negated: bool = False


def parse(text: str, *, raw: bool = False) -> Query:
    """Turn a typed query into a :class:`Query`; raises QueryError with a plain-language message."""
    if not isinstance(text, str) or not text.strip():
        raise QueryError("empty search query", hint="type one or more words")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryError(f"search query longer than {MAX_QUERY_CHARS} characters")
    if raw:
        _check_raw_prefixes(text)
        words = TOKEN.findall(text)[:32]
        return Query(fts=text, highlight=[_word_pattern(t, False, False) for t in words],
                     highlight_accented=[_word_pattern(t, False, True) for t in words],
                     needles=[_needle(t) for t in words], words=[_word(t, False) for t in words], raw=True)
    q = Query(fts="")
    groups: list[list[_Item]] = []
    negs: list[_Item] = []
    prefixes = 0
    pending_or = False
    for kind, value, neg, prefix in _lex(text):
        if kind == "or":
            if groups and groups[-1] and not pending_or:
                pending_or = True
                continue
            kind, value = "word", "OR"
        if kind == "filter":
            _add_filter(q, value, neg)
            pending_or = False
            continue
        item = _Item(_units(value, prefix, q if not neg else Query("")), neg)
        if not item.units:
            continue
        prefixes += prefix
        if neg:
            negs.append(item)
        elif pending_or:
            groups[-1].append(item)
        else:
            groups.append([item])
        pending_or = False
    if pending_or:  # a trailing OR is a word
        groups.append([_Item(_units("OR", False, q))])
    if prefixes > MAX_PREFIXES:
        raise QueryError(f"at most {MAX_PREFIXES} prefix terms (word*) in one query")
    if not groups:
        what = "only exclusions" if negs else "no words"
        raise QueryError(f"nothing to search for: the query has {what}", hint="add a word to look for")
    if sum(len(i.units) for g in groups for i in g) + sum(len(i.units) for i in negs) > MAX_UNITS:
        raise QueryError(f"search query has more than {MAX_UNITS} terms")
    expr = " AND ".join("(" + " OR ".join(_and(i.units) for i in g) + ")" for g in groups)
    for n in negs:
        expr = f"({expr}) NOT {_and(n.units)}"
    q.fts = expr
    q.units = [(u, False) for g in groups for i in g for u in i.units] + [(u, True) for n in negs for u in n.units]
    q.has_or = any(len(g) > 1 for g in groups)
    return q


RAW_SHORT_PREFIX = re.compile(r'(?<![^\W_])[^\W_]"?\s*\*')


def _check_raw_prefixes(text: str) -> None:
    """The prefix caps hold for raw FTS5 queries too (a rough scan: FTS5 syntax is not parsed here)."""
    if text.count("*") > MAX_PREFIXES:
        raise QueryError(f"at most {MAX_PREFIXES} prefix terms (word*) in one query")
    m = RAW_SHORT_PREFIX.search(text)
    if m:
        raise QueryError(f"prefix {m.group()!r} is too short", hint=f"give at least {MIN_PREFIX} characters before '*'")


def _and(units: list[str]) -> str:
    return units[0] if len(units) == 1 else "(" + " AND ".join(units) + ")"


def _lex(text: str) -> list[tuple[str, str, bool, bool]]:
    """(kind, value, negated, prefix) for each item: kind is word | phrase | filter | or."""
    out: list[tuple[str, str, bool, bool]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        neg = False
        if text[i] == "-" and i + 1 < n and not text[i + 1].isspace():
            neg, i = True, i + 1
        if text[i] == '"':
            end = text.find('"', i + 1)
            end = n if end < 0 else end  # an unbalanced quote is closed at the end
            value, i = text[i + 1 : end], end + 1
            prefix = i < n and text[i] == "*"
            while i < n and text[i] == "*":
                i += 1
            out.append(("phrase", value + ("*" if prefix else ""), neg, prefix))
            continue
        j = i
        while j < n and not text[j].isspace():
            if text[j] == '"' and FILTER_KEY.fullmatch(text[i:j]):
                break
            j += 1
        word, i = text[i:j], j
        m = FILTER.fullmatch(word)
        if m and m.group(2) == "" and i < n and text[i] == '"':  # path:"with spaces"
            end = text.find('"', i + 1)
            end = n if end < 0 else end
            word, i = word + text[i + 1 : end], end + 1
            m = FILTER.fullmatch(word)
        if m and m.group(2):
            out.append(("filter", word, neg, False))
        elif word == "OR" and not neg:
            out.append(("or", word, False, False))
        else:
            out.append(("word", word, neg, word.endswith("*")))
    return out


def _add_filter(q: Query, word: str, neg: bool) -> None:
    key, _, value = word.partition(":")
    if key.lower() == "ext":
        value = value.lstrip(".").lower()
        (q.not_exts if neg else q.exts).append(value)
    else:
        (q.not_paths if neg else q.paths).append(value)


def _units(word: str, prefix: bool, q: Query) -> list[str]:
    """The quoted FTS5 phrases that must all match for one word or phrase."""
    if prefix:
        word = word.rstrip("*")
    units: list[str] = []
    rest = word
    for m in SYMWORD.finditer(word):  # C++, C#: an extra token; the bare letter would match everything
        units.append(f'"{sign_word(m.group(1), m.group(2))}"')
        _mark(q, r"(?<![^\W_])" + re.escape(m.group(0)), m.group(0))
    rest = SYMWORD.sub(" ", rest)
    for m in CJK_RUN.finditer(rest):
        grams = cjk_grams(m.group())
        units.append(f'"{grams[0]}"*' if len(m.group()) == 1 else '"' + " ".join(grams[:-1]) + '"')
        _mark(q, re.escape(m.group()), m.group())
    rest = CJK_RUN.sub(" ", rest)
    for m in EMOJI_CHAR.finditer(rest):
        units.append(f'"{emoji_token(m.group())}"')
        _mark(q, re.escape(m.group()), m.group())
    tokens = TOKEN.findall(EMOJI_CHAR.sub(" ", rest))
    if tokens:
        last = len(tokens) - 1
        if prefix and len(tokens[last]) < MIN_PREFIX:
            raise QueryError(f"prefix {tokens[last]!r}* is too short",
                             hint=f"give at least {MIN_PREFIX} characters before '*'")
        units.append('"' + " ".join(tokens) + '"' + ("*" if prefix else ""))
        for k, t in enumerate(tokens):
            q.highlight.append(_word_pattern(t, prefix and k == last, False))
            q.highlight_accented.append(_word_pattern(t, prefix and k == last, True))
            q.needles.append(_needle(t))
            q.words.append(_word(t, prefix and k == last))
        if len(tokens) > 1:
            q.anchor_needles.append(_needle(tokens[0]))
            q.phrases.append((tuple(_needle(t) for t in tokens), prefix))
            for accents, out in ((False, q.anchor), (True, q.anchor_accented)):
                out.append(r"(?<![^\W_])" + r"[\W_]+".join(_letters(t, accents) for t in tokens)
                           + ("" if prefix else r"(?![^\W_])"))
    return units


def _mark(q: Query, source: str, literal: str) -> None:
    q.highlight.append(source)
    q.highlight_accented.append(source)
    q.needles.append(literal.lower())
    q.words.append(None)


def _word(token: str, prefix: bool) -> tuple[str, bool, bool]:
    return _needle(token), prefix, token.isascii() and token.isalpha()


def _needle(token: str) -> str:
    """What a plain (not accent-aware) match of ``token`` starts with, lowercased."""
    return token.lower().translate(_FOLD_ORD)


def _letters(token: str, accents: bool) -> str:
    if accents:
        return "".join(_letter_class(c) for c in token.lower())
    return re.escape(token.lower().translate(_FOLD_ORD))  # matched against folded text


def _word_pattern(token: str, prefix: bool, accents: bool) -> str:
    """A whole word (any case; with ``accents``, any accents) or a camelCase part: 'user' in getUserName."""
    body = _letters(token, accents)
    word = r"(?<![^\W_])" + body + ("" if prefix else r"(?![^\W_])")
    if not token.isascii() or not token.isalpha():
        return word
    part = token[0].upper() + token[1:].lower()
    return word + "|(?-i:(?<=[a-z0-9])" + part + ("" if prefix else "(?![a-z])") + ")"


@cache
def _letter_class(c: str) -> str:
    """A regex class for ``c`` and its accented forms (unicode61 removes diacritics)."""
    variants = _ACCENTED.get(c)
    return f"[{re.escape(c)}{variants}]" if variants else re.escape(c)


def fold_table() -> dict[str, str]:
    """Accented Latin letters → their base letter (both one character)."""
    out = {}
    for base, variants in _ACCENTED.items():
        for v in variants:
            out[v] = base
            if len(v.upper()) == 1:
                out[v.upper()] = base
    return out


def _accent_table() -> dict[str, str]:
    table: dict[str, list[str]] = {}
    for cp in list(range(0xC0, 0x250)) + list(range(0x1E00, 0x1F00)):
        ch = chr(cp)
        base = unicodedata.normalize("NFKD", ch)[:1].lower()
        if base.isascii() and base.isalpha() and ch.lower() != base:
            table.setdefault(base, []).append(ch.lower())
    return {k: "".join(sorted(set(v))) for k, v in table.items()}


_ACCENTED = _accent_table()
_FOLD_ORD = {ord(k): v for k, v in fold_table().items()}
