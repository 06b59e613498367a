"""Schema migrations for kora_kernel.db, keyed by ``PRAGMA user_version``.

Each entry is applied once, in its own transaction together with the bump of
``user_version``, so a crash mid-migration leaves the previous version intact.
"""

from __future__ import annotations

from collections.abc import Callable

import apsw

from . import fts


def _per_agency_fts(conn: apsw.Connection) -> None:
    """2: one FTS5 table per agency (``fts_<agency>``); the shared ``chunks_fts`` rows move there.

    Each moved chunk gets its derived tokens and the line it starts on (counted from the
    previous chunk of its document, whose text and byte offset are known). The tables get the
    shape of version 2 (with their text and ``line``); migration 4 makes them contentless.
    """
    agencies = [r[0] for r in conn.execute("SELECT DISTINCT agency_id FROM chunks_fts")]
    for agency_id in agencies:
        rows: list[tuple[int, int, int, str]] = conn.execute(
            "SELECT c.id, c.document_id, c.byte_offset, f.body FROM chunks c JOIN chunks_fts f ON f.rowid = c.id"
            " WHERE c.agency_id = ? AND f.agency_id = ? ORDER BY c.document_id, c.seq",
            (agency_id, agency_id),
        ).fetchall()  # type: ignore[assignment]
        name = fts.table(agency_id)
        conn.execute(f"CREATE VIRTUAL TABLE {name} USING fts5(body, extra, line UNINDEXED,"
                     f" tokenize = '{fts.TOKENIZER}')")
        conn.executemany(f"INSERT INTO {name}(rowid, body, line, extra) VALUES (?, ?, ?, ?)", _with_lines(rows))
    conn.execute("DROP TABLE chunks_fts")


def _with_lines(rows: list[tuple[int, int, int, str]]) -> list[tuple[int, str, int, str]]:
    out: list[tuple[int, str, int, str]] = []
    doc, line, prev_off, prev_text = -1, 1, 0, ""
    for chunk_id, doc_id, offset, text in rows:
        if doc_id != doc:
            doc, line = doc_id, 1
        else:
            line += prev_text.encode("utf-8")[: offset - prev_off].count(b"\n")
        prev_off, prev_text = offset, text
        out.append((chunk_id, text, line, fts.derive(text)))
    return out


_MOVING = "kora_fts_moving"  # no agency's table name (those start with 'fts_')


def _contentless_fts(conn: apsw.Connection) -> None:
    """4: the per-agency tables keep no text (``content=''``, ``contentless_delete=1``).

    The text is read from the file when it is needed (see :mod:`.retrieval`); the line a chunk
    starts on moves to ``chunks.line``. Each old table is renamed aside, its rows (text and
    derived tokens, from its ``_content`` table) are indexed again into the new table, and the
    old one is dropped, all in SQLite, without holding the rows in memory.
    """
    conn.execute("ALTER TABLE chunks ADD COLUMN line INTEGER NOT NULL DEFAULT 1")
    moving = f'"{_MOVING}"'
    for agency_id in fts.agencies(conn):
        name = fts.table(agency_id)
        conn.execute(f"ALTER TABLE {name} RENAME TO {moving}")
        content = f'"{_MOVING}_content"'
        conn.execute(f"UPDATE chunks SET line = x.c2 FROM {content} x"
                     " WHERE x.id = chunks.id AND chunks.agency_id = ? AND x.c2 IS NOT NULL", (agency_id,))
        fts.create(conn, name)
        conn.execute(f"INSERT INTO {name}(rowid, body, extra) SELECT id, c0, c1 FROM {content} ORDER BY id")
        conn.execute(f"DROP TABLE {moving}")
    fts.forget(conn)


Migration = str | Callable[[apsw.Connection], None]

# Renumbering at a merge is safe: a migration is identified by its place in this tuple only.
MIGRATIONS: tuple[Migration, ...] = (
    # 1: documents, chunks, full-text index, audit anchors, lockdowns.
    """
    CREATE TABLE documents(
        id INTEGER PRIMARY KEY,
        agency_id TEXT NOT NULL,
        root TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        skipped TEXT,
        indexed_at TEXT NOT NULL,
        UNIQUE(agency_id, root, path)
    ) STRICT;
    CREATE TABLE chunks(
        id INTEGER PRIMARY KEY,
        agency_id TEXT NOT NULL,
        document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        byte_offset INTEGER NOT NULL,
        byte_length INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        UNIQUE(document_id, seq)
    ) STRICT;
    CREATE INDEX chunks_agency ON chunks(agency_id);
    CREATE VIRTUAL TABLE chunks_fts USING fts5(
        body, agency_id UNINDEXED, tokenize = 'unicode61 remove_diacritics 2'
    );
    CREATE TABLE audit_anchor(
        agency_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL,
        segment INTEGER NOT NULL,
        offset INTEGER NOT NULL,
        updated TEXT NOT NULL
    ) STRICT;
    CREATE TABLE lockdown(
        agency_id TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        seq INTEGER,
        since TEXT NOT NULL
    ) STRICT;
    """,
    # 2: one FTS5 table per agency
    _per_agency_fts,
    # 3: the audit outbox. An index change and its audit record commit in one transaction;
    # the acknowledger appends the records to the KBL-1 log and deletes them. AUTOINCREMENT:
    # ids are never reused, so an id found in the log names exactly one outbox row.
    """
    CREATE TABLE audit_outbox(
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        agency_id TEXT NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL
    ) STRICT;
    """,
    # 4: contentless full-text tables; the start line in chunks.line
    _contentless_fts,
)

SCHEMA_VERSION = len(MIGRATIONS)
