"""Ranking a plain query (ANDed words, phrases and prefixes; no OR, no filters, not raw) in one pass.

A query's *units* are its quoted FTS5 phrases; its *words* are the single tokens of the units
it requires. A word is *selective* when it is in at most ``CAP`` chunks (a capped count tells,
newest first, without scoring). Three cases (docs/search.md, "Ranking and its bound"):

* one unit (a word, a prefix, a phrase with a selective word): a single pass over its newest
  ``CAP + 1`` matches scores the newest ``BOUNDED`` of them with FTS5's BM25 term weight. At
  most ``CAP`` matches: every match is scored and the IDF comes from the count just made, so
  the values are FTS5's own ``bm25()`` (exact). More: the newest ``BOUNDED`` are ranked.
* several units with a selective word: every match (at most ``CAP``) is scored by BM25 with each
  unit's IDF; a unit's document frequency is counted once and kept until the database changes.
* no selective word: the query is looked for only among the newest ``CAP + 1`` chunks that
  contain its least common word (four times as many while fewer than ``limit + offset`` matches
  turn up, up to the whole table); the newest ``BOUNDED`` matches found are ranked with every
  unit weighted alike.

Matching is done by FTS5; the scores are computed by a Python auxiliary function from FTS5's
own per-row statistics with FTS5's arithmetic, so an exact result has FTS5's bm25 values.
"""

from __future__ import annotations

import heapq
import math
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import apsw

from .query import Query

CAP = 2000  # queries with at most this many matching chunks are ranked in full (exact)
BOUNDED = 1000  # beyond CAP, the newest BOUNDED matches are ranked
GROWTH = 4  # a window with too few matches grows by this factor
DF_CACHE = 4096  # document frequencies kept per connection (until the database changes)
K1, B = 1.2, 0.75  # FTS5's bm25() constants

_TLS = threading.local()  # the pass being scored, per thread
_REGISTERED: weakref.WeakSet[apsw.Connection] = weakref.WeakSet()
_DF: weakref.WeakKeyDictionary[apsw.Connection, tuple[int, dict[tuple[str, str], int]]] = weakref.WeakKeyDictionary()


@dataclass(slots=True)
class Ranked:
    top: list[tuple[float, int]]  # (score, rowid), best first; the score is -bm25 (bigger is better)
    total: int
    exact: bool


class _Pass:
    """State of one scoring statement: how many more rows to score, the table's statistics."""

    __slots__ = ("avgdl", "idfs", "last", "left", "n_rows")

    def __init__(self, left: int, idfs: list[float | None] | None = None) -> None:
        self.left = left
        self.idfs = idfs
        self.last = max((i for i, x in enumerate(idfs or []) if x is not None), default=-1)
        self.avgdl = 0.0
        self.n_rows = 0

    def stats(self, api: apsw.FTS5ExtensionApi) -> float:
        if not self.avgdl:
            self.n_rows = n = api.row_count
            self.avgdl = (api.column_total_size(-1) / n if n else 0.0) or 1.0
        return self.avgdl


def _g(api: apsw.FTS5ExtensionApi, *args: Any) -> float | None:
    """BM25's term part of the row with every instance of every unit counted alike (None once
    the pass has scored its quota: rows beyond it are only counted)."""
    p: _Pass = _TLS.p
    if p.left <= 0:
        return None
    p.left -= 1
    avgdl = p.stats(api)
    tf = api.inst_count
    return tf * (K1 + 1.0) / (tf + K1 * (1 - B + B * api.column_size(-1) / avgdl))


def _bm25(api: apsw.FTS5ExtensionApi, *args: Any) -> float:
    """FTS5's bm25() (positive), with the IDF of each phrase given (None: an excluded unit).

    Every required phrase is in every matching row, and ``inst_count`` counts the instances of
    all of them: the last required phrase's frequency is what the others leave of it.
    """
    p: _Pass = _TLS.p
    avgdl = p.stats(api)
    idfs = p.idfs
    assert idfs is not None
    norm = K1 * (1 - B + B * api.column_size(-1) / avgdl)
    left = api.inst_count
    score = 0.0
    last = p.last
    for i, idf in enumerate(idfs):
        if idf is None:
            continue
        if i == last:
            f = left
        else:  # the indexed columns, body and extra (fts.py)
            f = len(api.phrase_column_offsets(i, 0)) + len(api.phrase_column_offsets(i, 1))
            left -= f
        score += idf * (f * (K1 + 1.0) / (f + norm))
    return score


def idf(n_rows: int, n_hit: int) -> float:
    """FTS5's IDF of a phrase in ``n_hit`` of ``n_rows`` rows (floored at 1e-6 like FTS5)."""
    value = math.log((n_rows - n_hit + 0.5) / (n_hit + 0.5))
    return value if value > 0.0 else 1e-6


def rank(conn: apsw.Connection, name: str, q: Query, want: int) -> Ranked | None:
    """The top ``want`` of a plain query, or None when the query is not plain (OR, filters, raw)."""
    pos = [u for u, neg in q.units if not neg]
    if q.raw or q.filtered or q.has_or or not pos:
        return None
    if conn not in _REGISTERED:
        conn.register_fts5_function("kora_g", _g)
        conn.register_fts5_function("kora_bm25", _bm25)
        _REGISTERED.add(conn)
    cap, bounded = max(CAP, want), max(BOUNDED, want)
    words = _words(pos)
    single = len(q.units) == 1
    if single and len(words) == 1 and words[0].endswith("*"):  # a prefix: its expansion merged once
        return _single(conn, name, q.fts, cap, bounded, want)
    newest = {w: _newest(conn, name, w, cap) for w in words}
    least = min(newest, key=lambda w: newest[w][0])
    if newest[least][0] == 0:
        return Ranked([], 0, True)
    if newest[least][0] <= cap:  # a selective word: at most cap matches, all ranked
        if single and len(words) == 1:  # one word: FTS5 ranks it (its IDF pass is short)
            ranked = conn.execute(f"SELECT rowid, bm25({name}) FROM {name} WHERE {name} MATCH ?"
                                  " ORDER BY rank, rowid LIMIT ?", (q.fts, want))
            return Ranked([(-float(bm), int(rid)) for rid, bm in ranked], newest[least][0], True)
        if single:
            return _single(conn, name, q.fts, cap, bounded, want)
        return _exact(conn, name, q, newest, least, cap, want)
    rarest = min(newest, key=lambda w: newest[w][1])
    if single and len(words) == 1:  # one common word: its window holds only matches
        p = _Pass(bounded)
        rows = _scored(conn, f"SELECT rowid, kora_g({name}) FROM {name} WHERE {name} MATCH ?"
                       " ORDER BY rowid DESC LIMIT ?", (q.fts, bounded), p)
        n, lo = newest[rarest]
        return Ranked(_top(rows, want), _estimate(conn, name, n, lo, p.n_rows), False)
    return _windowed(conn, name, q.fts, rarest, newest[rarest][1], cap, bounded, want)


def _words(units: list[str]) -> list[str]:
    """The single-token units each unit requires: '"a b"*' → '"a"', '"b"*'."""
    out: list[str] = []
    for u in units:
        body, star = (u[1:-2], "*") if u.endswith("*") else (u[1:-1], "")
        parts = body.split(" ")
        for k, t in enumerate(parts):
            w = f'"{t}"' + (star if k == len(parts) - 1 else "")
            if t and w not in out:
                out.append(w)
    return out


def _newest(conn: apsw.Connection, name: str, expr: str, cap: int) -> tuple[int, int]:
    """(matches counted up to cap + 1, the oldest rowid among them)."""
    row = conn.execute(f"SELECT count(*), min(rowid) FROM (SELECT rowid FROM {name} WHERE {name} MATCH ?"
                       " ORDER BY rowid DESC LIMIT ?)", (expr, cap + 1)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1] or 0)


def _scored(conn: apsw.Connection, sql: str, params: tuple[object, ...], p: _Pass) -> list[tuple[int, float | None]]:
    _TLS.p = p
    try:
        return [(int(rid), s) for rid, s in conn.execute(sql, params)]
    finally:
        _TLS.p = None


def _top(rows: list[tuple[int, float | None]], want: int, weight: float = 1.0) -> list[tuple[float, int]]:
    """The best ``want`` (score * weight, rowid): highest score first, then lowest rowid."""
    best = heapq.nsmallest(want, [(-s, rid) for rid, s in rows if s is not None])
    return [(weight * -neg, rid) for neg, rid in best]


def _single(conn: apsw.Connection, name: str, expr: str, cap: int, bounded: int, want: int) -> Ranked:
    p = _Pass(bounded)
    sql = f"SELECT rowid, kora_g({name}) FROM {name} WHERE {name} MATCH ?"
    rows = _scored(conn, sql + " ORDER BY rowid DESC LIMIT ?", (expr, cap + 1), p)
    n = len(rows)
    if n > cap:
        return Ranked(_top(rows, want), _estimate(conn, name, n, rows[-1][0], p.n_rows), False)
    if n > bounded:  # every match is ranked: score the older ones too
        p.left = n
        older = _scored(conn, sql + " AND rowid < ? ORDER BY rowid DESC", (expr, rows[bounded - 1][0]), p)
        rows = rows[:bounded] + older
    return Ranked(_top(rows, want, idf(p.n_rows, n)) if n else [], n, True)


def _exact(conn: apsw.Connection, name: str, q: Query, newest: dict[str, tuple[int, int]], least: str,
           cap: int, want: int) -> Ranked:
    """Several units, one of them selective: every match scored with FTS5's BM25."""
    p = _Pass(1)  # the table's row count, read by the auxiliary function on one row
    _scored(conn, f"SELECT rowid, kora_g({name}) FROM {name} WHERE {name} MATCH ? LIMIT 1", (least,), p)
    idfs: list[float | None] = []
    for unit, neg in q.units:
        known = newest.get(unit)
        # an excluded unit is never in a matching row: FTS5 adds its idf * 0
        idfs.append(None if neg else idf(p.n_rows, known[0] if known and known[0] <= cap else _df(conn, name, unit)))
    p = _Pass(0, idfs)
    rows = _scored(conn, f"SELECT rowid, kora_bm25({name}) FROM {name} WHERE {name} MATCH ?", (q.fts,), p)
    return Ranked(_top(rows, want), len(rows), True)


def _windowed(conn: apsw.Connection, name: str, expr: str, rarest: str, lo: int, cap: int, bounded: int,
              want: int) -> Ranked:
    """No selective word: the matches among the newest chunks holding the rarest word."""
    p = _Pass(bounded)
    sql = f"SELECT rowid, kora_g({name}) FROM {name} WHERE {name} MATCH ? AND rowid >= ?"
    rows = _scored(conn, sql + " ORDER BY rowid DESC", (expr, lo), p)
    span = cap + 1
    while len(rows) < want and lo > 0:
        span *= GROWTH
        row = conn.execute(f"SELECT rowid FROM {name} WHERE {name} MATCH ? ORDER BY rowid DESC LIMIT 1 OFFSET ?",
                           (rarest, span - 1)).fetchone()
        older = int(row[0]) if row else 0
        rows += _scored(conn, sql + " AND rowid < ? ORDER BY rowid DESC", (expr, older, lo), p)
        lo = older
    if lo <= 0:  # the whole table was searched: the count is exact, the ranking still bounded
        return Ranked(_top(rows, want), len(rows), False)
    return Ranked(_top(rows, want), _estimate(conn, name, len(rows), lo, p.n_rows), False)


def _estimate(conn: apsw.Connection, name: str, found: int, lo: int, n_rows: int) -> int:
    """Matches in the table, from ``found`` among the rowids from ``lo`` on (rowids spread evenly)."""
    row = conn.execute(f'SELECT (SELECT min(id) FROM "{name[1:-1]}_docsize"),'
                       f' (SELECT max(id) FROM "{name[1:-1]}_docsize")').fetchone()
    first, last = row if row else (None, None)
    if first is None or last is None or last < lo:
        return found
    share = float((last - lo + 1) / max(last - first + 1, 1))
    return max(found, min(n_rows or found, round(found / max(share, 1e-9))))


def _df(conn: apsw.Connection, name: str, unit: str) -> int:
    """Rows matching ``unit``: counted once, kept until another connection commits."""
    version = int(conn.execute("PRAGMA data_version").get)
    seen, cache = _DF.get(conn, (version, {}))
    if seen != version or len(cache) > DF_CACHE:
        cache = {}
    _DF[conn] = (version, cache)
    key = (name, unit)
    if key not in cache:
        cache[key] = int(conn.execute(f"SELECT count(*) FROM {name} WHERE {name} MATCH ?", (unit,)).get)
    return cache[key]
