"""Counts of the index kept between queries, per state of a table's index.

A common word's document frequency (BM25's IDF needs it: a pass over most of the table) and its
newest ``CAP + 1`` matches (which tell whether it is selective) are counted once and kept, for
every connection of the process, until that table's index changes: the key is FTS5's structure
record, which every write to the table's index (new segment, merge, deletion) rewrites.
"""

from __future__ import annotations

import threading
from typing import TypeVar

import apsw

DF_CACHE = 4096  # entries kept per table (until its index changes)
# Per (database file, table): the structure record the entries were counted under, and the entries.
DF: dict[tuple[str, str], tuple[bytes, dict[str, int]]] = {}
NEWEST: dict[tuple[str, str], tuple[bytes, dict[tuple[str, int], tuple[int, int]]]] = {}
LOCK = threading.Lock()
K = TypeVar("K")
V = TypeVar("V")


def newest(conn: apsw.Connection, name: str, expr: str, cap: int) -> tuple[int, int]:
    """(matches counted up to cap + 1, the oldest rowid among them)."""
    row = conn.execute(f"SELECT count(*), min(rowid) FROM (SELECT rowid FROM {name} WHERE {name} MATCH ?"
                       " ORDER BY rowid DESC LIMIT ?)", (expr, cap + 1)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1] or 0)


def newest_all(conn: apsw.Connection, name: str, words: list[str], cap: int) -> dict[str, tuple[int, int]]:
    """:func:`newest` of each word; the result of a word in more than ``cap`` chunks (a count
    that reads ``cap + 1`` entries of a long list) is kept per state of the table's index, for
    every connection, like the document frequencies (:func:`df`)."""
    out: dict[str, tuple[int, int]] = {}
    with conn:  # one read snapshot for the structure record and the counts
        kept = _current(NEWEST, conn, name)
        with LOCK:
            known = {w: kept.get((w, cap)) for w in words}
        for w in words:
            got = known[w]
            if got is None:
                got = newest(conn, name, w, cap)
                if got[0] > cap:
                    with LOCK:
                        kept[(w, cap)] = got
            out[w] = got
    return out


def _current(cache: dict[tuple[str, str], tuple[bytes, dict[K, V]]], conn: apsw.Connection, name: str) -> dict[K, V]:
    """The entries ``cache`` holds for the table in its index's current state (the structure
    record); a new, empty dict, kept from now on, once that state changed or the entries grew past
    :data:`DF_CACHE`. Call inside the read transaction the counts are taken in."""
    key = (conn.filename or f"memory {id(conn)}", name)
    mark = stamp(conn, name)
    with LOCK:
        seen = cache.get(key)
        entries = seen[1] if seen and seen[0] == mark and len(seen[1]) <= DF_CACHE else {}
        cache[key] = (mark, entries)
    return entries


def stamp(conn: apsw.Connection, name: str) -> bytes:
    """FTS5's structure record of the table: it changes with every write to the table's index."""
    row = conn.execute(f'SELECT block FROM "{name[1:-1]}_data" WHERE id = 10').fetchone()
    return bytes(row[0]) if row and row[0] is not None else b""


def df(conn: apsw.Connection, name: str, unit: str) -> int:
    """Rows matching ``unit``: counted once per state of the table's index, for every connection
    (a common word's count is a pass over most of the table)."""
    with conn:  # one read snapshot for the structure record and the count
        counts = _current(DF, conn, name)
        with LOCK:
            known = counts.get(unit)
        if known is not None:
            return known
        n = int(str(conn.execute(f"SELECT count(*) FROM {name} WHERE {name} MATCH ?", (unit,)).get))
    with LOCK:
        counts[unit] = n
    return n
