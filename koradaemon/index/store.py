"""The agency-scoped data layer: the only code that speaks SQL to kora_kernel.db.

Callers get an :class:`AgencyStore` for one agency; every statement it runs is
parameterised and filtered by that agency, so the filter cannot be forgotten.
No operation accepts SQL text from outside.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import apsw

from ..paths import check_agency_id
from . import fts
from . import search as searching
from .query import parse
from .search import Hit

# byte_offset, byte_length, sha256, text, start line (1-based), derived tokens (fts.derive)
ChunkRow = tuple[int, int, str, str, int, str]

# Next chunk id per writing connection: saves a max(id) query per document.
_NEXT_CHUNK_ID: weakref.WeakKeyDictionary[apsw.Connection, int] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class DocRow:
    id: int
    root: str
    path: str
    size: int
    mtime_ns: int
    sha256: str
    skipped: str | None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class AgencyStore:
    """Queries and changes for one agency on one connection (reads may use any thread's connection)."""

    def __init__(self, conn: apsw.Connection, agency_id: str) -> None:
        self.conn = conn
        self.agency_id = check_agency_id(agency_id)

    # -- reads ---------------------------------------------------------------
    def _one(self, sql: str, params: tuple[object, ...]) -> tuple[Any, ...]:
        row = self.conn.execute(sql, params).fetchone()
        assert row is not None
        return tuple(row)

    def document(self, root: str, path: str) -> DocRow | None:
        row = self.conn.execute(
            "SELECT id, root, path, size, mtime_ns, sha256, skipped FROM documents"
            " WHERE agency_id = ? AND root = ? AND path = ?",
            (self.agency_id, root, path),
        ).fetchone()
        return DocRow(*row) if row else None

    def known_files(self, root: str) -> dict[str, tuple[int, int]]:
        rows = self.conn.execute(
            "SELECT path, size, mtime_ns FROM documents WHERE agency_id = ? AND root = ?", (self.agency_id, root)
        )
        return {path: (size, mtime) for path, size, mtime in rows}

    def paths_under(self, root: str, prefix: str) -> list[str]:
        base = prefix.rstrip("/")
        rows = self.conn.execute(  # '/' is 0x2F and '0' is 0x30: the range holds exactly "base/..."
            "SELECT path FROM documents WHERE agency_id = ? AND root = ? AND path >= ? AND path < ?",
            (self.agency_id, root, base + "/", base + "0"),
        )
        return [r[0] for r in rows]

    def stats(self) -> dict[str, int]:
        docs, size, skipped = self._one(
            "SELECT count(*), coalesce(sum(size), 0), count(skipped) FROM documents WHERE agency_id = ?",
            (self.agency_id,),
        )
        (chunks,) = self._one("SELECT count(*) FROM chunks WHERE agency_id = ?", (self.agency_id,))
        return {"files": docs, "bytes": size, "skipped": skipped, "chunks": chunks}

    def skip_reasons(self) -> dict[str, int]:
        """How many of this agency's files are skipped, by reason."""
        rows = self.conn.execute(
            "SELECT skipped, count(*) FROM documents WHERE agency_id = ? AND skipped IS NOT NULL GROUP BY skipped",
            (self.agency_id,),
        ).fetchall()
        return {str(reason): n for reason, n in rows if isinstance(n, int)}

    def chunk(self, root: str, path: str, seq: int) -> tuple[int, int, str] | None:
        row = self.conn.execute(
            "SELECT c.byte_offset, c.byte_length, c.sha256 FROM chunks c JOIN documents d ON d.id = c.document_id"
            " WHERE d.agency_id = ? AND c.agency_id = ? AND d.root = ? AND d.path = ? AND c.seq = ?",
            (self.agency_id, self.agency_id, root, path, seq),
        ).fetchone()
        return (row[0], row[1], row[2]) if row else None

    def search(self, query: str, limit: int = 10, *, raw: bool = False) -> list[Hit]:
        """Top ``limit`` chunks of this agency for a typed query (see :mod:`.query`)."""
        return self.search_page(query, limit, raw=raw).hits

    def search_page(self, query: str, limit: int = 10, offset: int = 0, *, raw: bool = False,
                    time_limit: float = searching.TIME_LIMIT_S) -> searching.Result:
        return searching.run(self.conn, self.agency_id, parse(query, raw=raw), limit, offset, time_limit)

    # -- writes (writer thread only, inside its transaction) ------------------
    def _drop_chunks(self, doc_id: int) -> None:
        fts.delete_document(self.conn, self.agency_id, doc_id)
        self.conn.execute("DELETE FROM chunks WHERE document_id = ? AND agency_id = ?", (doc_id, self.agency_id))

    def put_document(
        self, root: str, path: str, size: int, mtime_ns: int, sha256: str,
        chunks: Iterable[ChunkRow], skipped: str | None = None,
    ) -> int:
        """Insert or replace a document and its chunks; returns the number of chunks written."""
        old = self.document(root, path)
        if old is not None:
            self._drop_chunks(old.id)
            self.conn.execute(
                "UPDATE documents SET size = ?, mtime_ns = ?, sha256 = ?, skipped = ?, indexed_at = ?"
                " WHERE id = ? AND agency_id = ?",
                (size, mtime_ns, sha256, skipped, _now(), old.id, self.agency_id),
            )
            doc_id = old.id
        else:
            self.conn.execute(
                "INSERT INTO documents(agency_id, root, path, size, mtime_ns, sha256, skipped, indexed_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (self.agency_id, root, path, size, mtime_ns, sha256, skipped, _now()),
            )
            doc_id = self.conn.last_insert_rowid()
        first_id = _NEXT_CHUNK_ID.get(self.conn)
        if first_id is None:
            (first_id,) = self._one("SELECT coalesce(max(id), 0) + 1 FROM chunks", ())
        meta: list[tuple[object, ...]] = []

        def fts_rows() -> Iterable[tuple[int, str, int, str]]:
            for seq, (offset, length, digest, text, line, extra) in enumerate(chunks):
                meta.append((first_id + seq, self.agency_id, doc_id, seq, offset, length, digest))
                yield first_id + seq, text, line, extra

        # Two executemany calls per document (streamed for big files) instead of two executes per chunk.
        fts.insert(self.conn, self.agency_id, fts_rows())
        if meta:
            self.conn.executemany(
                "INSERT INTO chunks(id, agency_id, document_id, seq, byte_offset, byte_length, sha256)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                meta,
            )
        # Ids only grow on this (the single writer's) connection; after a rollback they skip a few.
        _NEXT_CHUNK_ID[self.conn] = first_id + len(meta)
        return len(meta)

    def touch_document(self, root: str, path: str, size: int, mtime_ns: int) -> None:
        self.conn.execute(
            "UPDATE documents SET size = ?, mtime_ns = ? WHERE agency_id = ? AND root = ? AND path = ?",
            (size, mtime_ns, self.agency_id, root, path),
        )

    def delete_document(self, root: str, path: str) -> bool:
        old = self.document(root, path)
        if old is None:
            return False
        self._drop_chunks(old.id)
        self.conn.execute("DELETE FROM documents WHERE id = ? AND agency_id = ?", (old.id, self.agency_id))
        return True

    def delete_tree(self, root: str, prefix: str) -> int:
        paths = self.paths_under(root, prefix)
        for p in paths:
            self.delete_document(root, p)
        return len(paths)

    def move_document(self, root: str, src: str, dst: str) -> bool:
        """Rename a document in place (its chunks follow); a document already at ``dst`` is replaced."""
        if self.document(root, src) is None:
            return False
        self.delete_document(root, dst)
        self.conn.execute(
            "UPDATE documents SET path = ? WHERE agency_id = ? AND root = ? AND path = ?",
            (dst, self.agency_id, root, src),
        )
        return True

    def move_tree(self, root: str, src: str, dst: str) -> int:
        paths = self.paths_under(root, src)
        for p in paths:
            self.move_document(root, p, dst.rstrip("/") + p[len(src.rstrip("/")):])
        return len(paths)


def optimize_fts(conn: apsw.Connection) -> None:
    """Merge FTS5 segments; run when idle, never on the hot path."""
    fts.optimize(conn)
