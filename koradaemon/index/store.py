"""The agency-scoped data layer: the only code that speaks SQL to kora_kernel.db.

Callers get an :class:`AgencyStore` for one agency; every statement it runs is
parameterised and filtered by that agency, so the filter cannot be forgotten.
No operation accepts SQL text from outside.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable
from typing import Any

import apsw

from ..paths import check_agency_id
from ..watch.known import KnownFiles
from . import fts
from . import search as searching
from .names import fs_name, shown_name
from .query import parse
from .retrieval import ChunkText
from .rows import ChunkRow, DocRow
from .search import Hit

# Next chunk id per writing connection: saves a max(id) query per document.
_NEXT_CHUNK_ID: weakref.WeakKeyDictionary[apsw.Connection, int] = weakref.WeakKeyDictionary()
DEFER_ROWS = 1024
META_INSERT = ("INSERT INTO chunks(id, agency_id, document_id, seq, byte_offset, byte_length, sha256, line)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


class _Deferred:
    """Full-text work held back by ``put_document(defer=True)`` on one writing connection.

    Many small files cost one executemany each for the full-text deletes, inserts and chunk
    rows, instead of several statements per file; and no full-text statement runs between two
    documents' statements, whose statement journals would make FTS5 flush its pending terms into
    a segment of its own per file (which made a burst of rewritten files 4x slower than new ones).
    """

    __slots__ = ("deletes", "docs", "inserts", "meta")

    def __init__(self) -> None:
        self.inserts: dict[str, list[tuple[int, str, str]]] = {}
        self.deletes: dict[str, list[tuple[int]]] = {}
        self.meta: list[tuple[object, ...]] = []
        self.docs: set[int] = set()  # documents whose chunk rows are among ``meta``


_DEFERRED: weakref.WeakKeyDictionary[apsw.Connection, _Deferred] = weakref.WeakKeyDictionary()


UNCHANGED = -1  # put_document: the row already holds this very version; nothing was written


def flush_deferred(conn: apsw.Connection) -> None:
    """Run the full-text deletes and inserts ``put_document(defer=True)`` held back; call before COMMIT."""
    held = _DEFERRED.pop(conn, None)
    if held is None:
        return
    for agency_id, ids in held.deletes.items():
        fts.delete_rows(conn, agency_id, ids)
    for agency_id, fts_rows in held.inserts.items():
        fts.insert(conn, agency_id, fts_rows)
    if held.meta:
        conn.executemany(META_INSERT, held.meta)


def discard_deferred(conn: apsw.Connection) -> None:
    """Forget held-back rows (their transaction rolled back)."""
    _DEFERRED.pop(conn, None)


# Skip reasons that describe the database's trouble, not the file's (see known_files).
TRANSIENT_SKIPS = frozenset({"error:FullError", "error:IOError", "error:BusyError", "error:ReadOnlyError"})


_stamp: list[object] = [-1, ""]


def _now() -> str:
    """The UTC second as RFC 3339, formatted once per second (not once per row)."""
    sec = int(time.time())
    if _stamp[0] != sec:
        _stamp[:] = [sec, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec))]
    return str(_stamp[1])


class AgencyStore:
    """Queries and changes for one agency on one connection (reads may use any thread's connection).

    ``texts`` reads chunks back from their files (:class:`~.retrieval.FileTexts`): searching
    needs it, since the full-text tables keep no text.
    """

    def __init__(self, conn: apsw.Connection, agency_id: str, texts: ChunkText | None = None) -> None:
        self.conn = conn
        self.agency_id = check_agency_id(agency_id)
        self.texts = texts

    # -- reads ---------------------------------------------------------------
    def _one(self, sql: str, params: tuple[object, ...]) -> tuple[Any, ...]:
        row = self.conn.execute(sql, params).fetchone()
        assert row is not None
        return tuple(row)

    def document(self, root: str, path: str) -> DocRow | None:
        """The row of ``path`` (as ``os.fsdecode`` gives it); ``DocRow.path`` is the shown form."""
        row = self.conn.execute(
            "SELECT id, root, path, size, mtime_ns, sha256, skipped FROM documents"
            " WHERE agency_id = ? AND root = ? AND path = ?",
            (self.agency_id, root, shown_name(path)),
        ).fetchone()
        return DocRow(*row) if row else None

    def known_files(self, root: str) -> dict[str, tuple[int, int]]:
        """Indexed paths (``os.fsdecode`` form, as a crawl of the disk yields them) → (size, mtime_ns).

        A file skipped for a passing database error (recorded so by earlier versions: a full disk,
        an I/O error, a busy lock) is given mtime -1, so the reconcile crawl offers it again.
        """
        rows = self.conn.execute(
            "SELECT path, size, CASE WHEN skipped IN (" + ", ".join("?" * len(TRANSIENT_SKIPS)) + ")"
            " THEN -1 ELSE mtime_ns END FROM documents WHERE agency_id = ? AND root = ?",
            (*sorted(TRANSIENT_SKIPS), self.agency_id, root),
        )
        return {fs_name(path): (size, mtime) for path, size, mtime in rows}

    def known_index(self, root: str) -> KnownFiles:
        """:meth:`known_files` in the compact form a reconcile crawl holds (sorted by path)."""
        rows = self.conn.execute(
            "SELECT path, size, CASE WHEN skipped IN (" + ", ".join("?" * len(TRANSIENT_SKIPS)) + ")"
            " THEN -1 ELSE mtime_ns END FROM documents WHERE agency_id = ? AND root = ? ORDER BY path",
            (*sorted(TRANSIENT_SKIPS), self.agency_id, root),
        )
        return KnownFiles((fs_name(path), size, mtime) for path, size, mtime in rows)

    def paths_under(self, root: str, prefix: str) -> list[str]:
        """Indexed paths below the directory ``prefix`` (both in ``os.fsdecode`` form)."""
        return [fs_name(p) for p in self._shown_under(root, shown_name(prefix))]

    def _shown_under(self, root: str, shown_prefix: str) -> list[str]:
        base = shown_prefix.rstrip("/")
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
        if self.texts is None:
            raise TypeError("AgencyStore.search needs the agency's text reader (texts=FileTexts(...))")
        return searching.run(self.conn, self.agency_id, parse(query, raw=raw), limit, offset, time_limit,
                             texts=self.texts)

    # -- writes (writer thread only, inside its transaction) ------------------
    # Paths come in as os.fsdecode gives them (a byte that is not UTF-8 is a lone surrogate)
    # and are stored in their shown form (see names.shown_name): any name the kernel accepts.
    def _drop_chunks(self, doc_id: int, defer: bool) -> None:
        held = _DEFERRED.get(self.conn)
        if not defer or (held is not None and doc_id in held.docs):
            flush_deferred(self.conn)  # its rows must be in the tables to be found and dropped
            fts.delete_document(self.conn, self.agency_id, doc_id)
        else:
            old = self.conn.execute("SELECT id FROM chunks WHERE document_id = ? AND agency_id = ?",
                                    (doc_id, self.agency_id)).fetchall()
            if old:
                held = _DEFERRED.setdefault(self.conn, _Deferred())
                held.deletes.setdefault(self.agency_id, []).extend((int(str(r[0])),) for r in old)
        self.conn.execute("DELETE FROM chunks WHERE document_id = ? AND agency_id = ?", (doc_id, self.agency_id))

    def put_document(
        self, root: str, path: str, size: int, mtime_ns: int, sha256: str,
        chunks: Iterable[ChunkRow], skipped: str | None = None, *, fresh: bool = False, defer: bool = False,
    ) -> int:
        """Insert or replace a document and its chunks; returns the number of chunks written, or
        ``UNCHANGED`` (-1) when the row already holds this version (same size, mtime, sha256, skip).

        ``fresh``: the caller saw no row for this path, so a plain INSERT is tried first (no lookup,
        nothing to drop); otherwise one upsert gives the row's id and its old chunks are dropped.
        ``defer``: the full-text work of chunks given as a list (the old rows' deletes, the new
        rows) may wait for :func:`flush_deferred`, which the caller must run before it commits.
        """
        shown = shown_name(path)
        values = (self.agency_id, root, shown, size, mtime_ns, sha256, skipped, _now())
        doc_id: int | None = None
        if fresh:
            try:
                self.conn.execute(
                    "INSERT INTO documents(agency_id, root, path, size, mtime_ns, sha256, skipped, indexed_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", values)
                doc_id = self.conn.last_insert_rowid()
            except apsw.ConstraintError:
                doc_id = None  # indexed meanwhile after all: replace it below
        if doc_id is None:
            # The row is left alone (no row returned) when it already holds this very version: two
            # events for one write can both be prepared before the first one commits (or while the
            # writer waits for disk space), and the second must not index (and audit) it again.
            row = self.conn.execute(
                "INSERT INTO documents(agency_id, root, path, size, mtime_ns, sha256, skipped, indexed_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(agency_id, root, path) DO UPDATE SET"
                " size = excluded.size, mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256,"
                " skipped = excluded.skipped, indexed_at = excluded.indexed_at"
                " WHERE size != excluded.size OR mtime_ns != excluded.mtime_ns OR sha256 != excluded.sha256"
                " OR skipped IS NOT excluded.skipped RETURNING id", values).fetchone()
            if row is None:
                return UNCHANGED
            doc_id = int(row[0])
            self._drop_chunks(doc_id, defer and isinstance(chunks, list | tuple))
        first_id = _NEXT_CHUNK_ID.get(self.conn)
        if first_id is None:
            (first_id,) = self._one("SELECT coalesce(max(id), 0) + 1 FROM chunks", ())
        if defer and isinstance(chunks, list | tuple):
            held = _DEFERRED.setdefault(self.conn, _Deferred())
            fts_buf = held.inserts.setdefault(self.agency_id, [])
            meta_buf = held.meta
            for seq, (offset, length, digest, text, line, extra) in enumerate(chunks):
                fts_buf.append((first_id + seq, text, extra))
                meta_buf.append((first_id + seq, self.agency_id, doc_id, seq, offset, length, digest, line))
            if chunks:
                held.docs.add(doc_id)
            _NEXT_CHUNK_ID[self.conn] = first_id + len(chunks)
            if len(meta_buf) >= DEFER_ROWS:
                flush_deferred(self.conn)
            return len(chunks)
        flush_deferred(self.conn)
        meta: list[tuple[object, ...]] = []

        def fts_rows() -> Iterable[tuple[int, str, str]]:
            for seq, (offset, length, digest, text, line, extra) in enumerate(chunks):
                meta.append((first_id + seq, self.agency_id, doc_id, seq, offset, length, digest, line))
                yield first_id + seq, text, extra

        # Two executemany calls per document (streamed for big files) instead of two executes per chunk.
        fts.insert(self.conn, self.agency_id, fts_rows())
        if meta:
            self.conn.executemany(META_INSERT, meta)
        # Ids only grow on this (the single writer's) connection; after a rollback they skip a few.
        _NEXT_CHUNK_ID[self.conn] = first_id + len(meta)
        return len(meta)

    def touch_document(self, root: str, path: str, size: int, mtime_ns: int) -> None:
        self.conn.execute(
            "UPDATE documents SET size = ?, mtime_ns = ? WHERE agency_id = ? AND root = ? AND path = ?",
            (size, mtime_ns, self.agency_id, root, shown_name(path)),
        )

    def _delete_shown(self, root: str, shown: str) -> bool:
        """Drop the document's full-text rows, then the document (its chunk rows go by cascade)."""
        flush_deferred(self.conn)
        row = self.conn.execute("SELECT id FROM documents WHERE agency_id = ? AND root = ? AND path = ?",
                                (self.agency_id, root, shown)).fetchone()
        if row is None:
            return False
        fts.delete_document(self.conn, self.agency_id, int(row[0]))
        self.conn.execute(
            "DELETE FROM documents WHERE agency_id = ? AND root = ? AND path = ?", (self.agency_id, root, shown)
        )
        return self.conn.changes() > 0

    def delete_document(self, root: str, path: str) -> bool:
        return self._delete_shown(root, shown_name(path))

    def delete_tree(self, root: str, prefix: str) -> int:
        paths = self._shown_under(root, shown_name(prefix))
        for p in paths:
            self._delete_shown(root, p)
        return len(paths)

    def _move_shown(self, root: str, src: str, dst: str) -> bool:
        exists = self.conn.execute(
            "SELECT 1 FROM documents WHERE agency_id = ? AND root = ? AND path = ?", (self.agency_id, root, src)
        ).fetchone()
        if exists is None:
            return False
        self._delete_shown(root, dst)
        self.conn.execute(
            "UPDATE documents SET path = ? WHERE agency_id = ? AND root = ? AND path = ?",
            (dst, self.agency_id, root, src),
        )
        return True

    def move_document(self, root: str, src: str, dst: str) -> bool:
        """Rename a document in place (its chunks follow); a document already at ``dst`` is replaced."""
        return self._move_shown(root, shown_name(src), shown_name(dst))

    def move_tree(self, root: str, src: str, dst: str) -> int:
        src_shown, dst_shown = shown_name(src).rstrip("/"), shown_name(dst).rstrip("/")
        paths = self._shown_under(root, src_shown)
        for p in paths:
            self._move_shown(root, p, dst_shown + p[len(src_shown):])
        return len(paths)


def optimize_fts(conn: apsw.Connection) -> None:
    """Merge FTS5 segments; run when idle, never on the hot path."""
    fts.optimize(conn)
