"""Ranking a plain query (ANDed words, phrases and prefixes; no OR, no filters, not raw).

A query's *units* are its quoted FTS5 phrases; its *words* are the single tokens of the units
it requires. A word is *selective* when it is in at most ``CAP`` chunks (a capped count tells,
newest first, without scoring). The cases (docs/search.md, "Ranking and its bound"):

* one word, selective: FTS5's own ``ORDER BY rank`` (exact).
* several units with a selective word: every match (at most ``CAP``) is scored by BM25 with each
  unit's IDF; a unit's document frequency is counted once and kept until the table's index changes.
* one prefix: its words come from the term list (fts5vocab); few chunks: every match scored
  (exact); more: the OR of its words (at most ``OR_WORDS``) read newest first, or FTS5's merged
  lists once, and the newest ``BOUNDED`` matches ranked when there are more than ``CAP``.
* no selective word: the query is looked for only among the newest ``CAP + 1`` chunks that
  contain its least common word (four times as many while fewer than ``limit + offset`` matches
  turn up, up to the whole table); the newest ``BOUNDED`` matches found are ranked with every
  unit weighted alike, the others counted.

Matching is done by FTS5; the scores are computed by Python auxiliary functions from FTS5's
own per-row statistics with FTS5's arithmetic (the table's totals read from FTS5's totals
record), so an exact result has FTS5's bm25 values. Each scored row costs a Python call: the
callbacks do no more than FTS5's formula, and the statements hand them only the rows ranked.
A row whose score could not reach the best ``want`` so far even at length 0 is left unscored
(None): its length, the costly lookup, is not read, and the page is the same.
"""

from __future__ import annotations

import heapq
import math
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import apsw

from . import counts
from .query import Query

CAP = 1000  # queries with at most this many matching chunks are ranked in full (exact)
BOUNDED = 500  # beyond CAP, the newest BOUNDED matches are ranked
GROWTH = 4  # a window with too few matches grows by this factor
OR_WORDS = 256  # a prefix in more than CAP chunks expanding to at most this many words is read as their OR
# ... unless its words' lists are short: FTS5's merge of a prefix's lists costs about a fifth of a
# microsecond per listed chunk, an OR about 40 us per word for the newest BOUNDED matches.
MERGE_PER_WORD = 200
K1, B = 1.2, 0.75  # FTS5's bm25() constants

_TLS = threading.local()  # the statistics of the statement being scored, per thread
_REGISTERED: weakref.WeakSet[apsw.Connection] = weakref.WeakSet()
_K1P1 = K1 + 1.0
_SHORTEST = K1 * (1 - B)  # BM25's length part for a row of length 0: the bound of every row's score


@dataclass(slots=True)
class Ranked:
    top: list[tuple[float, int]]  # (score, rowid), best first; the score is -bm25 (bigger is better)
    total: int
    exact: bool


def _g(api: apsw.FTS5ExtensionApi, *args: Any) -> float | None:
    """BM25's term part of the row, every instance of every unit counted alike (FTS5's arithmetic,
    in FTS5's order of operations, so that ``idf * _g`` is FTS5's bm25 of a one-unit query).

    None for a row that cannot be among the query's best ``_TLS.want``: even at length 0 its
    score would be below the ``want``-th best of the rows scored so far (``_TLS.best``, a
    min-heap; see :func:`_start`). Its length, the costly lookup, is then never read."""
    t = _TLS
    tf = api.inst_count
    best: list[float] = t.best
    if len(best) >= t.want and tf * _K1P1 / (tf + _SHORTEST) < best[0]:
        return None
    avgdl: float = t.avgdl
    return _kept(tf * _K1P1 / (tf + K1 * (1 - B + B * api.column_size(-1) / avgdl)))


def _start(want: int) -> None:
    """A new query for :func:`_g`: no row scored yet, its best ``want`` to find."""
    _TLS.best = []
    _TLS.want = want


def _g_quota(api: apsw.FTS5ExtensionApi, *args: Any) -> float | None:
    """:func:`_g` for the first ``_TLS.left`` rows, None for the rest (only counted)."""
    t = _TLS
    if t.left <= 0:
        return None
    t.left -= 1
    tf = api.inst_count
    avgdl: float = t.avgdl
    return tf * _K1P1 / (tf + K1 * (1 - B + B * api.column_size(-1) / avgdl))


def _bm25(api: apsw.FTS5ExtensionApi, *args: Any) -> float | None:
    """FTS5's bm25() (positive), with the IDF of each required phrase given (``_TLS.plan``).

    Every required phrase is in every matching row, and ``inst_count`` counts the instances of
    all of them: the frequency of the most common phrase (``_TLS.rest``, whose list of offsets
    would be the longest) is what the others leave of it. Excluded phrases add ``idf * 0`` in
    FTS5, which changes no sum: they are left out of the plan. The terms are added in FTS5's
    phrase order. None, as in :func:`_g`, for a row whose score even at length 0 is below the
    best ``want`` so far: its length is not read.
    """
    t = _TLS
    left = api.inst_count
    others = t.others
    weights: list[float] = t.plan
    if len(others) == 1:  # two required phrases (the common case): no lists
        c0, c1 = api.phrase_locations(others[0])  # both indexed columns in one call
        f = len(c0) + len(c1)
        left -= f
        f0, f1 = (left, f) if t.rest == 0 else (f, left)
        w0, w1 = weights
        if len(t.best) >= t.want and (0.0 + w0 * (f0 * _K1P1 / (f0 + _SHORTEST))
                                      + w1 * (f1 * _K1P1 / (f1 + _SHORTEST))) < t.best[0]:
            return None
        norm: float = K1 * (1 - B + B * api.column_size(-1) / t.avgdl)
        return _kept(0.0 + w0 * (f0 * _K1P1 / (f0 + norm)) + w1 * (f1 * _K1P1 / (f1 + norm)))
    freqs = []
    for i in others:  # the indexed columns, body and extra (fts.py)
        c0, c1 = api.phrase_locations(i)
        f = len(c0) + len(c1)
        left -= f
        freqs.append(f)
    freqs.insert(t.rest, left)
    if len(t.best) >= t.want:
        bound = 0.0
        for w, f in zip(weights, freqs, strict=True):
            bound += w * (f * _K1P1 / (f + _SHORTEST))
        if bound < t.best[0]:
            return None
    norm = K1 * (1 - B + B * api.column_size(-1) / t.avgdl)
    score = 0.0
    for w, f in zip(weights, freqs, strict=True):
        score += w * (f * _K1P1 / (f + norm))
    return _kept(score)


def _kept(score: float) -> float:
    """``score``, entered among the best ``_TLS.want`` so far (the bound of :func:`_g` and :func:`_bm25`)."""
    best: list[float] = _TLS.best
    if len(best) < _TLS.want:
        heapq.heappush(best, score)
    elif score > best[0]:
        heapq.heapreplace(best, score)
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
        conn.register_fts5_function("kora_gq", _g_quota)
        _REGISTERED.add(conn)
    cap, bounded = max(CAP, want), max(BOUNDED, want)
    _start(want)
    words = _words(pos)
    single = len(q.units) == 1
    if single and len(words) == 1 and words[0].endswith("*"):  # a prefix: its expansion merged once
        return _prefix(conn, name, words[0], cap, bounded, want)
    newest = counts.newest_all(conn, name, words, cap)
    least = min(newest, key=lambda w: newest[w][0])
    if newest[least][0] == 0:
        return Ranked([], 0, True)
    if newest[least][0] <= cap:  # a selective word: at most cap matches, all ranked
        if single and len(words) == 1:  # one word: FTS5 ranks it (its IDF pass is short)
            ranked = conn.execute(f"SELECT rowid, bm25({name}) FROM {name} WHERE {name} MATCH ?"
                                  " ORDER BY rank, rowid LIMIT ?", (q.fts, want))
            return Ranked([(-float(bm), int(rid)) for rid, bm in ranked], newest[least][0], True)
        return _exact(conn, name, q, newest, cap, want)
    rarest = min(newest, key=lambda w: newest[w][1])
    if single and len(words) == 1:  # one common word: its window holds only matches
        n_rows, _ = _stats(conn, name)
        rows = _scored(conn, f"SELECT rowid, kora_g({name}) FROM {name} WHERE {name} MATCH ?"
                       " ORDER BY rowid DESC LIMIT ?", (q.fts, bounded))
        n, lo = newest[rarest]
        return Ranked(_top(rows, want), _estimate(conn, name, n, lo, n_rows), False)
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


def _stats(conn: apsw.Connection, name: str) -> tuple[int, float]:
    """(rows, average row length in tokens) as FTS5's bm25() sees them, set for the scoring
    functions of this thread. Read from FTS5's totals record (``_data`` row 1: varints, the row
    count, then the tokens of each column), which is what FTS5 itself reads for them."""
    row = conn.execute(f'SELECT block FROM "{name[1:-1]}_data" WHERE id = 1').fetchone()
    values = _varints(bytes(row[0])) if row and row[0] is not None else [0]
    n_rows = values[0]
    _TLS.avgdl = (sum(values[1:]) / n_rows if n_rows else 0.0) or 1.0
    return n_rows, _TLS.avgdl


def _varints(blob: bytes) -> list[int]:
    """SQLite's variable-length integers (big-endian 7-bit groups; a ninth byte gives 8 bits)."""
    out: list[int] = []
    i, n = 0, len(blob)
    while i < n:
        v = 0
        for k in range(9):
            if i >= n:
                return out
            c = blob[i]
            i += 1
            if k == 8:
                v = (v << 8) | c
                break
            v = (v << 7) | (c & 0x7F)
            if c < 0x80:
                break
        out.append(v)
    return out


def _scored(conn: apsw.Connection, sql: str, params: tuple[object, ...]) -> list[tuple[int, float | None]]:
    """Rows and scores; None for a row :func:`_g` left out (it cannot reach the top)."""
    return [(int(rid), None if s is None else float(s)) for rid, s in conn.execute(sql, params)]


def _top(rows: list[tuple[int, float | None]], want: int, weight: float = 1.0) -> list[tuple[float, int]]:
    """The best ``want`` (weight * score, rowid): highest score first, then lowest rowid."""
    best = heapq.nsmallest(want, [(-s, rid) for rid, s in rows if s is not None])
    return [(weight * -neg, rid) for neg, rid in best]


def _expansion(conn: apsw.Connection, name: str, prefix: str) -> list[tuple[str, int]]:
    """The indexed words starting with ``prefix`` and their chunk counts, at most
    ``OR_WORDS + 1`` of them (fts5vocab: a range scan of the term index; each count is a walk
    of the word's list of chunks, so the scan stops where the OR would stop being used)."""
    vocab = f'temp."{name[1:-1]}_vocab"'
    sql = f"SELECT term, doc FROM {vocab} WHERE term >= ? AND term < ? LIMIT ?"
    args = (prefix, prefix + "\U0010ffff", OR_WORDS + 1)
    try:
        rows = conn.execute(sql, args).fetchall()
    except apsw.SQLError:
        conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {vocab} USING fts5vocab(main, '{name[1:-1]}', 'row')")
        rows = conn.execute(sql, args).fetchall()
    return [(str(t), int(str(d))) for t, d in rows]


def _prefix(conn: apsw.Connection, name: str, expr: str, cap: int, bounded: int, want: int) -> Ranked:
    """One prefix (``expr`` is ``"conf"*``). FTS5 merges the lists of every word it expands to
    before the first row comes out, so the prefix is matched once:

    * its words in at most ``cap`` chunks together: every match scored in one pass (exact);
    * at most :data:`OR_WORDS` words, one of them in more than ``cap`` chunks: the newest
      ``bounded`` matches scored in one pass, read from FTS5's merged lists when they are short
      (:data:`MERGE_PER_WORD`), else from the OR of the words, read lazily newest first; the
      total is estimated from the rowids they span;
    * more, and at most :data:`OR_WORDS` words: the OR of the words is counted to ``cap + 1``
      and its newest ``bounded`` matches scored (all when ``cap`` or fewer);
    * more words: one pass over the merged lists, newest first, scores ``bounded`` matches and
      counts the rest up to ``cap + 1`` (a second pass scores the older ones when that is all).
    """
    n_rows, _ = _stats(conn, name)
    words = _expansion(conn, name, expr[1:-2])
    if not words:
        return Ranked([], 0, True)
    sql = f"SELECT rowid, kora_g({name}) FROM {name} WHERE {name} MATCH ?"
    listed = sum(d for _, d in words)  # the chunks of all its words: the merge's length
    most = max(d for _, d in words)
    if listed <= cap and len(words) <= OR_WORDS:
        rows = _scored(conn, sql, (expr,))
    elif len(words) <= OR_WORDS and most > cap:  # more than cap matches: the newest ranked, one pass
        if listed > MERGE_PER_WORD * len(words):  # long lists: their OR, read lazily, costs less
            expr = " OR ".join('"' + w.replace('"', '""') + '"' for w, _ in words)
        rows = _scored(conn, sql + " ORDER BY rowid DESC LIMIT ?", (expr, bounded))
        if len(rows) >= bounded:  # (fewer: the term list counted deleted chunks; all scored below)
            found = _estimate(conn, name, len(rows), rows[-1][0], n_rows)
            return Ranked(_top(rows, want), max(most, min(listed, found)), False)
    elif len(words) <= OR_WORDS:
        expr = " OR ".join('"' + w.replace('"', '""') + '"' for w, _ in words)
        n, lo = counts.newest(conn, name, expr, cap)
        if n > cap:
            rows = _scored(conn, sql + " ORDER BY rowid DESC LIMIT ?", (expr, bounded))
            return Ranked(_top(rows, want), _estimate(conn, name, n, lo, n_rows), False)
        rows = _scored(conn, sql, (expr,))
    else:
        quota = f"SELECT rowid, kora_gq({name}) FROM {name} WHERE {name} MATCH ?"
        _TLS.left = bounded
        counted = _scored(conn, quota + " ORDER BY rowid DESC LIMIT ?", (expr, cap + 1))
        rows = [(rid, sc) for rid, sc in counted if sc is not None]  # the newest, scored
        if len(counted) > cap:
            return Ranked(_top(rows, want), _estimate(conn, name, len(counted), counted[-1][0], n_rows), False)
        if len(counted) > bounded:  # every match is ranked: score the older ones too
            rows += _scored(conn, sql + " AND rowid < ?", (expr, rows[-1][0]))
    n = len(rows)  # every match, scored with the prefix's IDF: FTS5's bm25
    return Ranked(_top(rows, want, idf(n_rows, n)) if n else [], n, True)


def _exact(conn: apsw.Connection, name: str, q: Query, newest: dict[str, tuple[int, int]], cap: int,
           want: int) -> Ranked:
    """Several units, one of them selective: every match scored with FTS5's BM25."""
    n_rows, _ = _stats(conn, name)
    required: list[tuple[int, int]] = []  # (phrase number, chunks holding it)
    for i, (unit, neg) in enumerate(q.units):
        if not neg:  # an excluded unit is never in a matching row: FTS5 adds its idf * 0
            known = newest.get(unit)
            required.append((i, known[0] if known and known[0] <= cap else counts.df(conn, name, unit)))
    rest = max(range(len(required)), key=lambda k: required[k][1])
    _TLS.plan = [idf(n_rows, df) for _, df in required]
    _TLS.others = [i for k, (i, _) in enumerate(required) if k != rest]
    _TLS.rest = rest
    rows = _scored(conn, f"SELECT rowid, kora_bm25({name}) FROM {name} WHERE {name} MATCH ?", (q.fts,))
    return Ranked(_top(rows, want), len(rows), True)


def _windowed(conn: apsw.Connection, name: str, expr: str, rarest: str, lo: int, cap: int, bounded: int,
              want: int) -> Ranked:
    """No selective word: the matches among the newest chunks holding the rarest word; the newest
    ``bounded`` of them are scored, the others only counted (for the estimated total)."""
    n_rows, _ = _stats(conn, name)
    sql = f"SELECT rowid, kora_g({name}) FROM {name} WHERE {name} MATCH ? AND rowid >= ? AND rowid < ?"
    count = f"SELECT count(*) FROM {name} WHERE {name} MATCH ? AND rowid >= ? AND rowid < ?"
    rows: list[tuple[int, float | None]] = []
    found, hi, span = 0, -1, cap + 1
    while True:
        top = hi if hi >= 0 else (1 << 63) - 1
        if len(rows) < bounded:
            more = _scored(conn, sql + " ORDER BY rowid DESC LIMIT ?", (expr, lo, top, bounded - len(rows)))
            rows += more
            found += len(more)
            if len(rows) >= bounded:  # the rest of this window only counted
                found += int(conn.execute(count, (expr, lo, rows[-1][0])).get)
        else:
            found += int(conn.execute(count, (expr, lo, top)).get)
        if found >= want or lo <= 0:
            break
        span *= GROWTH
        row = conn.execute(f"SELECT rowid FROM {name} WHERE {name} MATCH ? ORDER BY rowid DESC LIMIT 1 OFFSET ?",
                           (rarest, span - 1)).fetchone()
        hi, lo = lo, int(row[0]) if row else 0
    if lo <= 0:  # the whole table was searched: the count is exact, the ranking still bounded
        return Ranked(_top(rows, want), found, False)
    return Ranked(_top(rows, want), _estimate(conn, name, found, lo, n_rows), False)


def _estimate(conn: apsw.Connection, name: str, found: int, lo: int, n_rows: int) -> int:
    """Matches in the table, from ``found`` among the rowids from ``lo`` on (rowids spread evenly)."""
    row = conn.execute(f'SELECT (SELECT min(id) FROM "{name[1:-1]}_docsize"),'
                       f' (SELECT max(id) FROM "{name[1:-1]}_docsize")').fetchone()
    first, last = row if row else (None, None)
    if first is None or last is None or last < lo:
        return found
    share = float((last - lo + 1) / max(last - first + 1, 1))
    return max(found, min(n_rows or found, round(found / max(share, 1e-9))))
