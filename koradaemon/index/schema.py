"""Schema migrations for kora_kernel.db, keyed by ``PRAGMA user_version``.

Each entry is applied once, in its own transaction together with the bump of
``user_version``, so a crash mid-migration leaves the previous version intact.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
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
    # 2: the audit outbox. An index change and its audit record commit in one transaction;
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
)

SCHEMA_VERSION = len(MIGRATIONS)
