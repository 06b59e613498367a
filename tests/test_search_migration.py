"""Schema 1 → 2: rows of the shared chunks_fts table move into per-agency tables."""

from __future__ import annotations

import hashlib
from pathlib import Path

import apsw

from koradaemon.index import fts
from koradaemon.index.db import open_db, user_version
from koradaemon.index.schema import MIGRATIONS, SCHEMA_VERSION
from koradaemon.index.store import AgencyStore


def v1_database(path: Path) -> None:
    conn = apsw.Connection(str(path))
    first = MIGRATIONS[0]
    assert isinstance(first, str)
    with conn:
        conn.execute(first)
        conn.execute("PRAGMA user_version = 1")
        docs = [("alpha", "a.md", ["one\ntwo\nthree\n", "three\nfour needle\n"], [0, 8]),
                ("beta", "b.md", ["beta needle text\n"], [0])]
        cid = 0
        for did, (agency, path, chunks, offsets) in enumerate(docs, 1):
            conn.execute("INSERT INTO documents VALUES (?, ?, 'r', ?, 1, 0, 'x', NULL, 'now')", (did, agency, path))
            for seq, (text, off) in enumerate(zip(chunks, offsets, strict=True)):
                cid += 1
                digest = hashlib.sha256(text.encode()).hexdigest()
                conn.execute("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (cid, agency, did, seq, off, len(text.encode()), digest))
                conn.execute("INSERT INTO chunks_fts(rowid, body, agency_id) VALUES (?, ?, ?)", (cid, text, agency))
    conn.close()


def test_existing_rows_move_to_per_agency_tables(tmp_path: Path) -> None:
    v1_database(tmp_path / "k.db")
    conn = open_db(tmp_path / "k.db")
    assert user_version(conn) == SCHEMA_VERSION
    assert sorted(fts.agencies(conn)) == ["alpha", "beta"]
    assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'chunks_fts'").fetchall()
    (hit,) = AgencyStore(conn, "alpha").search("needle")
    assert (hit.path, hit.seq, hit.line_start, hit.match_line) == ("a.md", 1, 3, 4)
    assert [h.path for h in AgencyStore(conn, "beta").search("needle")] == ["b.md"]
    assert AgencyStore(conn, "alpha").search("beta") == [], "no agency sees another's rows"
