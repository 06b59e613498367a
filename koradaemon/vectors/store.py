"""The vector tables: one pair per agency in their own database, sqlite-vec loaded into APSW.

``kora_vectors.db`` sits beside ``kora_kernel.db`` so the embedding step never takes
the kernel database's write lock (keyword indexing is never delayed). Its connection
attaches the kernel database as ``k`` and only reads it: chunks and documents are the
truth, vectors follow them.

Per agency (``<s>`` is the agency id in hex, so no two agencies share a table):

- ``vd_<s>(chunk_id, chunk_sha256, passages)``: chunks whose passages are embedded.
- ``vp_<s>(id, chunk_id, byte_offset, byte_length, sha256, code, embedding)``: one row
  per passage; ``embedding`` is a sqlite-vec int8 vector (checked by ``vec_int8``; each vector
  scaled to ±127, which cosine ignores: 256 bytes instead of 1 KiB at 256 dimensions),
  ``code`` its packed sign bits for the in-memory pre-filter.

A hit is served only while its chunk row still exists with the same sha256, so an
edit, delete or move never shows stale vectors, even before the sweep removes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from ..paths import check_agency_id
from . import VectorsUnavailable

BUSY_TIMEOUT_MS = 10_000
# Small page caches (KiB): a search touches a few hundred rows; the OS page cache serves the rest,
# and every control thread that searches holds a connection of its own.
CACHE_KIB = 512
# Search connections map the vectors database: a query scores a few hundred passages on random
# pages, and reading each through the page cache (a pread per page) made the p99 five times the
# p50. Mapped pages are the OS page cache's, shared and reclaimable, not this process's heap.
QUERY_MMAP_BYTES = 1 << 30

META = """CREATE TABLE IF NOT EXISTS vec_agencies(
    agency_id TEXT PRIMARY KEY, model TEXT NOT NULL, dims INTEGER NOT NULL) STRICT"""


@dataclass(frozen=True, slots=True)
class PendingChunk:
    chunk_id: int
    sha256: str
    offset: int
    length: int
    root: str
    path: str


# One passage to store: chunk id, byte offset, byte length, sha256, sign-bit code, int8 embedding.
PassageRow = tuple[int, int, int, str, bytes, bytes]


@dataclass(frozen=True, slots=True)
class VectorHit:
    passage_id: int
    similarity: float
    passage_offset: int
    passage_length: int
    passage_sha256: str
    chunk_id: int
    seq: int
    chunk_offset: int
    chunk_length: int
    chunk_sha256: str
    root: str
    path: str


def _one(conn: apsw.Connection, sql: str, params: tuple[object, ...] = ()) -> tuple[Any, ...]:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return tuple(row)


def _all(conn: apsw.Connection, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(sql, params)]


def load_extension(conn: apsw.Connection) -> str:
    """Load sqlite-vec into ``conn``; its version, or a clear error."""
    try:
        import sqlite_vec
    except ImportError:
        raise VectorsUnavailable("the sqlite-vec extension is missing: the 'sqlite-vec' package is not installed",
                                 hint="pip install sqlite-vec, or set vectors.enabled: false") from None
    try:
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        conn.enable_load_extension(False)
        return str(_one(conn, "SELECT vec_version()")[0])
    except (apsw.Error, AttributeError, OSError) as exc:
        raise VectorsUnavailable(f"the sqlite-vec extension cannot be loaded: {exc}",
                                 hint="reinstall sqlite-vec, or set vectors.enabled: false") from None


def connect(vectors_db: Path, kernel_db: Path, mmap_bytes: int = 0) -> apsw.Connection:
    """A connection on the vectors database with sqlite-vec loaded and the kernel attached as ``k``.

    ``mmap_bytes``: how much of the vectors database reads may map (search connections).
    """
    try:
        conn = apsw.Connection(str(vectors_db))
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        conn.pragma("journal_mode", "wal")
        conn.pragma("synchronous", "normal")
    except apsw.Error as exc:
        raise VectorsUnavailable(f"cannot open the vectors database {vectors_db.name}: {exc}") from None
    load_extension(conn)
    conn.execute("ATTACH DATABASE ? AS k", (str(kernel_db),))
    conn.execute(f"PRAGMA main.cache_size = -{CACHE_KIB}")
    conn.execute(f"PRAGMA k.cache_size = -{CACHE_KIB // 2}")
    if mmap_bytes:
        conn.execute(f"PRAGMA main.mmap_size = {int(mmap_bytes)}")
    conn.execute(META)
    return conn


def data_version(conn: apsw.Connection) -> int:
    """Changes whenever another connection committed to the kernel database."""
    return int(_one(conn, "PRAGMA k.data_version")[0])


class VectorTables:
    """One agency's vector tables on one connection; every statement is scoped to the agency."""

    def __init__(self, conn: apsw.Connection, agency_id: str) -> None:
        self.conn = conn
        self.agency_id = check_agency_id(agency_id)
        s = agency_id.encode().hex()
        self.vp, self.vd = f"vp_{s}", f"vd_{s}"

    def ensure(self, model: str, dims: int) -> bool:
        """Create the tables; drop them first if they hold another model's vectors. True if (re)created."""
        rows = _all(self.conn, "SELECT model, dims FROM vec_agencies WHERE agency_id = ?", (self.agency_id,))
        if rows and rows[0] == (model, dims):
            return False
        with self.conn:
            self.conn.execute(f"DROP TABLE IF EXISTS {self.vp}")
            self.conn.execute(f"DROP TABLE IF EXISTS {self.vd}")
            self.conn.execute(
                f"CREATE TABLE {self.vp}(id INTEGER PRIMARY KEY AUTOINCREMENT, chunk_id INTEGER NOT NULL,"
                " byte_offset INTEGER NOT NULL, byte_length INTEGER NOT NULL, sha256 TEXT NOT NULL,"
                " code BLOB NOT NULL, embedding BLOB NOT NULL) STRICT"
            )
            self.conn.execute(f"CREATE INDEX {self.vp}_chunk ON {self.vp}(chunk_id)")
            self.conn.execute(
                f"CREATE TABLE {self.vd}(chunk_id INTEGER PRIMARY KEY, chunk_sha256 TEXT NOT NULL,"
                " passages INTEGER NOT NULL) STRICT"
            )
            self.conn.execute("INSERT OR REPLACE INTO vec_agencies(agency_id, model, dims) VALUES (?, ?, ?)",
                              (self.agency_id, model, dims))
        return True

    # -- what is left to embed --------------------------------------------------------
    _PENDING = (
        " FROM k.chunks c JOIN k.documents d ON d.id = c.document_id"
        " WHERE c.agency_id = ? AND d.agency_id = ? AND c.id > ?"
        " AND NOT EXISTS (SELECT 1 FROM {vd} v WHERE v.chunk_id = c.id AND v.chunk_sha256 = c.sha256)"
    )

    def pending(self, after: int, limit: int) -> list[PendingChunk]:
        rows = _all(
            self.conn,
            "SELECT c.id, c.sha256, c.byte_offset, c.byte_length, d.root, d.path"
            + self._PENDING.format(vd=self.vd) + " ORDER BY c.id LIMIT ?",
            (self.agency_id, self.agency_id, after, limit),
        )
        return [PendingChunk(*r) for r in rows]

    def lag(self) -> tuple[int, int]:
        """Chunks (and their bytes) that have no vectors yet."""
        n, size = _one(
            self.conn,
            "SELECT count(*), coalesce(sum(c.byte_length), 0)" + self._PENDING.format(vd=self.vd),
            (self.agency_id, self.agency_id, 0),
        )
        return int(n), int(size)

    def counts(self) -> tuple[int, int]:
        """(chunks embedded, passages stored)."""
        (chunks,) = _one(self.conn, f"SELECT count(*) FROM {self.vd}")
        (passages,) = _one(self.conn, f"SELECT count(*) FROM {self.vp}")
        return int(chunks), int(passages)

    # -- writes (the embedding thread only) -------------------------------------------
    def put(self, done: Sequence[tuple[PendingChunk, int]], rows: Sequence[PassageRow]) -> list[tuple[int, bytes]]:
        """Store the passages of these chunks (``done``: each chunk and its passage count; ``rows``: their
        passages, in order), replacing older ones; returns the new (id, code) pairs.

        A deferred transaction that writes only this database: the kernel database is never locked.
        """
        with self.conn:
            self.conn.executemany(f"DELETE FROM {self.vp} WHERE chunk_id = ?", [(c.chunk_id,) for c, _ in done])
            self.conn.executemany(
                f"INSERT INTO {self.vp}(chunk_id, byte_offset, byte_length, sha256, code, embedding)"
                " VALUES (?, ?, ?, ?, ?, vec_int8(?))", rows)
            # AUTOINCREMENT in one transaction of this only writer: the new ids are consecutive
            last = self.conn.last_insert_rowid()
            self.conn.executemany(
                f"INSERT OR REPLACE INTO {self.vd}(chunk_id, chunk_sha256, passages) VALUES (?, ?, ?)",
                [(c.chunk_id, c.sha256, n) for c, n in done])
        added = [(last - len(rows) + 1 + i, r[4]) for i, r in enumerate(rows)]
        return added

    def sweep(self) -> list[int]:
        """Drop vectors whose chunk was deleted or changed; returns the passage ids removed."""
        gone = (
            f"SELECT v.chunk_id FROM {self.vd} v WHERE NOT EXISTS (SELECT 1 FROM k.chunks c"
            " WHERE c.id = v.chunk_id AND c.sha256 = v.chunk_sha256 AND c.agency_id = ?)"
        )
        with self.conn:
            chunk_ids = [r[0] for r in self.conn.execute(gone, (self.agency_id,))]
            removed: list[int] = []
            for cid in chunk_ids:
                removed.extend(r[0] for r in self.conn.execute(f"SELECT id FROM {self.vp} WHERE chunk_id = ?", (cid,)))
                self.conn.execute(f"DELETE FROM {self.vp} WHERE chunk_id = ?", (cid,))
                self.conn.execute(f"DELETE FROM {self.vd} WHERE chunk_id = ?", (cid,))
        return removed

    # -- reads ------------------------------------------------------------------------
    def all_codes(self) -> Iterable[tuple[int, bytes]]:
        return ((int(r[0]), bytes(r[1])) for r in self.conn.execute(f"SELECT id, code FROM {self.vp} ORDER BY id"))

    def rank(self, query: bytes, candidates: Sequence[int], limit: int) -> list[VectorHit]:
        """Exact cosine (sqlite-vec) over ``candidates``, live chunks only, best first.

        Two steps: score the candidates on the passage table alone, then resolve only the best
        ``limit`` against the kernel's chunk and document rows (the sha256 check drops stale ones).
        """
        if not candidates:
            return []
        marks = ",".join("?" * len(candidates))
        scored = _all(
            self.conn,
            f"SELECT id, 1.0 - vec_distance_cosine(vec_int8(embedding), vec_int8(?)) AS sim FROM {self.vp}"
            f" WHERE id IN ({marks}) ORDER BY sim DESC LIMIT ?",
            (query, *candidates, limit),
        )
        if not scored:
            return []
        sims = {int(pid): float(sim) for pid, sim in scored}
        marks = ",".join("?" * len(sims))
        rows = _all(
            self.conn,
            "SELECT p.id, p.byte_offset, p.byte_length, p.sha256,"
            " c.id, c.seq, c.byte_offset, c.byte_length, c.sha256, d.root, d.path"
            # CROSS JOIN fixes the order: the passages first (else the planner scans the agency's chunks)
            f" FROM {self.vp} p CROSS JOIN {self.vd} v ON v.chunk_id = p.chunk_id"
            " CROSS JOIN k.chunks c ON c.id = p.chunk_id AND c.sha256 = v.chunk_sha256 AND c.agency_id = ?"
            " CROSS JOIN k.documents d ON d.id = c.document_id AND d.agency_id = ?"
            f" WHERE p.id IN ({marks})",
            (self.agency_id, self.agency_id, *sims),
        )
        hits = [VectorHit(r[0], sims[r[0]], *r[1:]) for r in rows]
        hits.sort(key=lambda h: -h.similarity)
        return hits
