"""Running a parsed query on one agency's table: ranking, time limit, snippets.

Plain queries (ANDed words, phrases and prefixes) are ranked by :mod:`.ranking`, with one pass
of the full-text match in most cases. Queries with OR, ``path:``/``ext:`` filters or raw FTS5
syntax take the general route below, two passes over the same matches:

1. the probe reads up to ``CAP + 1`` matching rowids, newest first, without scoring;
2. if the query matched at most ``CAP`` chunks, every match is ranked by FTS5's own BM25
   (the exact top, exact total); otherwise only the ``BOUNDED`` newest matches are ranked,
   by BM25 with every phrase weighted alike (:func:`_tf_score`), and the total is an
   estimate. Computing BM25's IDF alone costs a full pass over a common phrase's matches,
   which is what this bound avoids.

Snippets are cut from a small window around the first highlight in each hit's text, in
Python, for the returned hits only (:mod:`.snippets`). The full-text tables keep no text: each
returned hit's chunk is read from its file (one open per hit, sha256 checked, see
:mod:`.retrieval`); a hit whose file changed or vanished since indexing is kept, marked
``stale``, with no snippet. Every statement runs under a progress
handler that interrupts it after the time limit (:class:`~koradaemon.errors.QueryTooExpensive`).
"""

from __future__ import annotations

import heapq
import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import apsw

from ..errors import DataError, PathError, QueryError, QueryTooExpensive
from . import fts, ranking
from .query import Query
from .ranking import BOUNDED, CAP, K1, B
from .retrieval import ChunkRef, ChunkText
from .snippets import Highlighter, make_snippet

__all__ = ["BOUNDED", "CAP", "Hit", "Result", "make_snippet", "run"]

SPAN_COUNT = 20_000  # rows counted to estimate a bounded query's total
TIME_LIMIT_S = 1.0
PROGRESS_STEPS = 2000  # VM instructions between deadline checks
SLOW_S = 0.02  # a search using more CPU time calls its ``on_slow`` (the daemon lowers the thread's priority)

_REGISTERED: weakref.WeakSet[apsw.Connection] = weakref.WeakSet()
_TLS = threading.local()  # the row count seen by the ranking function, per thread


@dataclass(frozen=True, slots=True)
class Hit:
    chunk_id: int
    root: str
    path: str
    seq: int
    byte_offset: int
    byte_length: int
    sha256: str
    line_start: int
    line_end: int
    match_line: int
    snippet: str
    highlights: tuple[tuple[int, int], ...]
    score: float
    bm25: float
    stale: bool = False  # the file changed or vanished since indexing: no text, no snippet

    def to_dict(self) -> dict[str, object]:
        # No chunk_id: chunk ids come from one sequence shared by all agencies, so their
        # growth would tell one tenant how much another indexes. (path, seq) names a chunk.
        return {
            "root": self.root, "path": self.path, "seq": self.seq,
            "offset": self.byte_offset, "length": self.byte_length, "sha256": self.sha256,
            "line_start": self.line_start, "line_end": self.line_end, "match_line": self.match_line,
            "snippet": self.snippet, "highlights": [list(r) for r in self.highlights],
            "score": self.score, "bm25": self.bm25, "stale": self.stale,
        }


@dataclass(frozen=True, slots=True)
class Result:
    hits: list[Hit]
    total: int
    exact: bool  # False: ``total`` is an estimate and the top was ranked among the newest BOUNDED matches

    def to_dict(self) -> dict[str, object]:
        return {"hits": [h.to_dict() for h in self.hits], "total": self.total, "total_exact": self.exact,
                "ranked": "all" if self.exact else f"newest {BOUNDED} matches"}


def run(conn: apsw.Connection, agency_id: str, q: Query, limit: int = 10, offset: int = 0,
        time_limit: float = TIME_LIMIT_S, on_slow: Callable[[], object] | None = None, *,
        texts: ChunkText) -> Result:
    """One page of hits, their text read by ``texts`` (from the files). ``on_slow`` is called once
    (in this thread) when the statements have used :data:`SLOW_S` of this thread's CPU time: CPU
    time, so that waiting for a busy machine's CPU does not make a cheap search look heavy."""
    if not fts.exists(conn, agency_id):
        return Result([], 0, True)
    deadline = time.monotonic() + time_limit
    slow = [time.thread_time() + SLOW_S if on_slow else math.inf]

    def progress() -> bool:
        if slow[0] < math.inf and time.thread_time() > slow[0]:
            slow[0] = math.inf
            if on_slow:
                on_slow()
        return time.monotonic() > deadline

    conn.set_progress_handler(progress, PROGRESS_STEPS)
    try:
        found = _run(conn, agency_id, q, limit, offset)
    except apsw.InterruptError:
        raise QueryTooExpensive(
            f"query too expensive: stopped after {time_limit:g} s",
            hint="use rarer words, a longer prefix or fewer OR terms") from None
    except apsw.SQLError as exc:
        if q.raw:
            raise QueryError(f"bad FTS5 query: {exc}", hint="see the FTS5 query syntax") from None
        raise QueryError("the query could not be run", hint="report this query as a bug") from None
    finally:
        conn.set_progress_handler(None)
    return Result(_with_text(found.hits, q, texts), found.total, found.exact)


def _run(conn: apsw.Connection, agency_id: str, q: Query, limit: int, offset: int) -> Result:
    name = fts.table(agency_id)
    want = offset + limit
    plain = ranking.rank(conn, name, q, want)
    if plain is not None:
        best = plain.top[0][0] if plain.top and plain.top[0][0] > 0 else 1.0
        return Result(_hits(conn, name, agency_id, q, plain.top[offset:want], best), plain.total, plain.exact)
    cap = max(CAP, want)
    probe = _probe(conn, name, agency_id, q, cap + 1)
    if not probe:
        return Result([], 0, True)
    exact = len(probe) <= cap
    if exact:  # every match ranked by FTS5's own BM25, sorted in SQLite
        total = len(probe)
        if q.filtered:
            conds, params = _filters(q)
            sql = (f"SELECT f.rowid, bm25(f.{name}) FROM {name} AS f JOIN chunks c ON c.id = f.rowid"
                   f" JOIN documents d ON d.id = c.document_id WHERE f.{name} MATCH ? AND c.agency_id = ?"
                   f" AND d.agency_id = ?{conds} ORDER BY 2, 1 LIMIT ?")
            rows = conn.execute(sql, (q.fts, agency_id, agency_id, *params, want))
        else:
            rows = conn.execute(f"SELECT rowid, bm25({name}) FROM {name} WHERE {name} MATCH ?"
                                " ORDER BY rank, rowid LIMIT ?", (q.fts, want))
        top = [(-float(bm), int(rid)) for rid, bm in rows]
    else:
        cands = probe[: max(BOUNDED, want)]
        scored, total = _bounded(conn, name, q, cands[-1], cands[0])
        if q.filtered:  # the rowid range also holds rows the filters dropped
            keep = set(cands)
            scored = [x for x in scored if x[1] in keep]
        top = heapq.nsmallest(want, scored, key=lambda x: (-x[0], x[1]))
    best = top[0][0] if top and top[0][0] > 0 else 1.0
    page = top[offset:want]
    return Result(_hits(conn, name, agency_id, q, page, best), total, exact)


def _probe(conn: apsw.Connection, name: str, agency_id: str, q: Query, n: int) -> list[int]:
    if not q.filtered:
        sql = f"SELECT rowid FROM {name} WHERE {name} MATCH ? ORDER BY rowid DESC LIMIT ?"
        return [r[0] for r in conn.execute(sql, (q.fts, n))]
    conds, params = _filters(q)
    sql = (f"SELECT f.rowid FROM {name} AS f JOIN chunks c ON c.id = f.rowid JOIN documents d ON d.id = c.document_id"
           f" WHERE f.{name} MATCH ? AND c.agency_id = ? AND d.agency_id = ?{conds} ORDER BY f.rowid DESC LIMIT ?")
    return [r[0] for r in conn.execute(sql, (q.fts, agency_id, agency_id, *params, n))]


def _filters(q: Query) -> tuple[str, list[object]]:
    conds: list[str] = []
    params: list[object] = []
    full = "lower(d.root || '/' || d.path)"
    for p in q.paths:
        conds.append(f"instr({full}, ?) > 0")
        params.append(p.lower())
    for p in q.not_paths:
        conds.append(f"instr({full}, ?) = 0")
        params.append(p.lower())
    if q.exts:
        conds.append("(" + " OR ".join("substr(lower(d.path), -?) = ?" for _ in q.exts) + ")")
        for e in q.exts:
            params += [len(e) + 1, "." + e]
    for e in q.not_exts:
        conds.append("substr(lower(d.path), -?) != ?")
        params += [len(e) + 1, "." + e]
    return "".join(" AND " + c for c in conds), params


def _tf_score(api: apsw.FTS5ExtensionApi, *args: Any) -> float:
    """BM25 of one row with every phrase weighted alike: all instances of the query's phrases
    count as one term. FTS5 itself gives every phrase in more than half the rows the same
    (floor) weight, so for words that common this is its ordering too."""
    tf = api.inst_count
    avgdl = api.aux_data
    if avgdl is None:
        _TLS.row_count = n = api.row_count
        avgdl = api.aux_data = (api.column_total_size(-1) / max(n, 1)) or 1.0
    return float(tf * (K1 + 1) / (tf + K1 * (1 - B + B * api.column_size(-1) / avgdl)))


def _bounded(conn: apsw.Connection, name: str, q: Query, lo: int, hi: int) -> tuple[list[tuple[float, int]], int]:
    """Scores for the candidates in [lo, hi] (see :func:`_tf_score`) and an estimated total."""
    if conn not in _REGISTERED:
        conn.register_fts5_function("kora_tf", _tf_score)
        _REGISTERED.add(conn)
    scored = [(float(s), int(rid)) for rid, s in conn.execute(
        f"SELECT rowid, kora_tf({name}) FROM {name} WHERE {name} MATCH ? AND rowid >= ? AND rowid <= ?",
        (q.fts, lo, hi))]
    # Matches are spread over rowids about evenly: extrapolate from the share of rows they cover
    # (counted up to SPAN_COUNT rows; sparser matches than that report the CAP + 1 seen).
    span: int = conn.execute(f'SELECT count(*) FROM (SELECT 1 FROM "{name[1:-1]}_docsize" WHERE id >= ?'
                             " LIMIT ?)", (lo, SPAN_COUNT)).get
    n_rows = int(getattr(_TLS, "row_count", 0)) or span
    return scored, max(CAP + 1, min(n_rows, round(len(scored) * n_rows / max(span, 1))))


def _hits(conn: apsw.Connection, name: str, agency_id: str, q: Query,
          page: list[tuple[float, int]], best: float) -> list[Hit]:
    """The page's hits from the index alone (reference, start line, score); :func:`_with_text`
    adds what needs the text."""
    if not page:
        return []
    ids = [rid for _, rid in page]
    marks = ",".join("?" * len(ids))
    meta = {r[0]: r for r in conn.execute(
        "SELECT c.id, d.root, d.path, c.seq, c.byte_offset, c.byte_length, c.sha256, c.line FROM chunks c"
        " JOIN documents d ON d.id = c.document_id"
        f" WHERE c.id IN ({marks}) AND c.agency_id = ? AND d.agency_id = ?",
        (*ids, agency_id, agency_id))}
    out = []
    for score, rid in page:
        m = meta.get(rid)
        if m is None:
            continue  # deleted between the passes
        line = int(m[7])
        out.append(Hit(int(m[0]), str(m[1]), str(m[2]), int(m[3]), int(m[4]), int(m[5]), str(m[6]),
                       line_start=line, line_end=line, match_line=line, snippet="", highlights=(),
                       score=round(100.0 * score / best, 1), bm25=-score))
    return out


def _with_text(hits: list[Hit], q: Query, texts: ChunkText) -> list[Hit]:
    """Each hit's snippet, highlights and line range, from its chunk read back from the file (one
    open per hit). A file changed or gone since indexing (or no longer servable) gives a stale hit:
    kept, with its start line from the index, and never text that does not match its sha256."""
    marker = Highlighter(q) if hits else None
    out = []
    for hit in hits:
        try:
            text = texts(ChunkRef(hit.root, hit.path, hit.byte_offset, hit.byte_length, hit.sha256))
        except (DataError, PathError, OSError, ValueError):  # never served: stale
            out.append(_rebuilt(hit, hit.line_end, hit.match_line, "", (), stale=True))
            continue
        assert marker is not None
        snippet, ranges, at = marker.snippet(text)
        line = hit.line_start
        last = len(text) - 1 if text.endswith("\n") else len(text)
        out.append(_rebuilt(hit, line + text.count("\n", 0, max(last, 0)), line + text.count("\n", 0, at),
                            snippet, ranges))
    return out


def _rebuilt(hit: Hit, line_end: int, match_line: int, snippet: str, highlights: tuple[tuple[int, int], ...],
             *, stale: bool = False) -> Hit:
    """``hit`` with what its text gave (built directly: ``dataclasses.replace`` costs ~20 us a hit)."""
    return Hit(hit.chunk_id, hit.root, hit.path, hit.seq, hit.byte_offset, hit.byte_length, hit.sha256,
               hit.line_start, line_end, match_line, snippet, highlights, hit.score, hit.bm25, stale)
