"""Schema migrations of the full-text tables: 1 → 2 (per-agency tables), 3 → 4 (contentless tables)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import apsw

from koradaemon.index import fts
from koradaemon.index.db import immediate, open_db, user_version
from koradaemon.index.retrieval import FileTexts
from koradaemon.index.schema import MIGRATIONS, SCHEMA_VERSION
from koradaemon.index.store import AgencyStore, ChunkRow

A_MD = "one\ntwo\nthree\nfour needle\n"


def v1_database(path: Path) -> None:
    (path.parent / "r").mkdir()
    (path.parent / "r" / "a.md").write_text(A_MD)
    (path.parent / "r" / "b.md").write_text("beta needle text\n")
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
    texts = FileTexts(tmp_path, ("r",))
    (hit,) = AgencyStore(conn, "alpha", texts).search("needle")
    assert (hit.path, hit.seq, hit.line_start, hit.match_line) == ("a.md", 1, 3, 4)
    assert [h.path for h in AgencyStore(conn, "beta", texts).search("needle")] == ["b.md"]
    assert AgencyStore(conn, "alpha", texts).search("beta") == [], "no agency sees another's rows"


# Version 3's per-agency table: the text kept in the table, the start line an UNINDEXED column.
V3_FTS = "CREATE VIRTUAL TABLE {} USING fts5(body, extra, line UNINDEXED, tokenize = 'unicode61 remove_diacritics 2')"
FILES = {  # agency -> path -> (text, chunk boundaries)
    "alpha": {"a.md": (A_MD + "getUserName and C++ notes\nlast line needle\n", [0, 8, 26, 52]),
              "c.txt": ("日本語のテキスト needle 😀\n", [0])},
    "be_ta": {"b.md": ("beta needle text\nHTTPServer again\n", [0, 17])},
}
QUERIES = ["needle", "user", "c++", "日本", "httpserver", '"four needle"', "ne*", "needle -beta", "line OR text"]


def chunk_rows(text: str, starts: list[int]) -> list[ChunkRow]:
    """Chunks from ``starts`` to the next start (the last to the end; each overlaps nothing)."""
    raw = text.encode()
    rows: list[ChunkRow] = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(raw)
        piece = raw[start:end]
        rows.append((start, len(piece), hashlib.sha256(piece).hexdigest(), piece.decode(),
                     raw[:start].count(b"\n") + 1, fts.derive(piece.decode())))
    return rows


def write_files(folder: Path) -> None:
    for files in FILES.values():
        for path, (text, _) in files.items():
            (folder / "r").mkdir(exist_ok=True)
            (folder / "r" / path).write_text(text)


def v3_database(path: Path) -> None:
    """A database as version 3 wrote it: documents, chunks, and per-agency tables holding the text."""
    conn = apsw.Connection(str(path))
    first, third = MIGRATIONS[0], MIGRATIONS[2]
    assert isinstance(first, str) and isinstance(third, str)
    with conn:
        conn.execute(first)
        conn.execute("DROP TABLE chunks_fts")
        conn.execute(third)
        conn.execute("PRAGMA user_version = 3")
        cid = did = 0
        for agency, files in FILES.items():
            table = '"fts_' + agency.replace("_", "__") + '"'
            conn.execute(V3_FTS.format(table))
            for rel, (text, starts) in files.items():
                did += 1
                raw = text.encode()
                conn.execute("INSERT INTO documents VALUES (?, ?, 'r', ?, ?, 0, ?, NULL, 'now')",
                             (did, agency, rel, len(raw), hashlib.sha256(raw).hexdigest()))
                for seq, (off, length, digest, body, line, extra) in enumerate(chunk_rows(text, starts)):
                    cid += 1
                    conn.execute("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 (cid, agency, did, seq, off, length, digest))
                    conn.execute(f"INSERT INTO {table}(rowid, body, line, extra) VALUES (?, ?, ?, ?)",
                                 (cid, body, line, extra))
    conn.close()


def v4_database(path: Path) -> apsw.Connection:
    """The same files indexed by this version's store."""
    conn = open_db(path)
    with immediate(conn):
        for agency, files in FILES.items():
            for rel, (text, starts) in files.items():
                raw = text.encode()
                AgencyStore(conn, agency).put_document("r", rel, len(raw), 0, hashlib.sha256(raw).hexdigest(),
                                                        chunk_rows(text, starts))
    return conn


def test_a_version_3_database_searches_identically_after_its_tables_lose_their_text(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    for folder in (tmp_path / "old", tmp_path / "new"):
        write_files(folder)
    v3_database(tmp_path / "old" / "k.db")
    migrated = open_db(tmp_path / "old" / "k.db")
    fresh = v4_database(tmp_path / "new" / "k.db")
    assert user_version(migrated) == SCHEMA_VERSION
    assert sorted(fts.agencies(migrated)) == ["alpha", "be_ta"]
    shadow = {r[0] for r in migrated.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not {n for n in shadow if n.endswith("_content") or n.startswith("kora_")}, shadow
    lines = "SELECT id, line FROM chunks ORDER BY id"
    assert migrated.execute(lines).fetchall() == fresh.execute(lines).fetchall()
    assert [r[1] for r in migrated.execute(lines)] == [1, 3, 5, 6, 1, 1, 2]
    for agency in FILES:
        name = fts.table(agency)
        migrated.execute(f"INSERT INTO {name}({name}) VALUES ('integrity-check')")
        config = f'"{name[1:-1]}_config"'
        assert migrated.execute(f"SELECT v FROM {config} WHERE k = 'deletemerge'").fetchall() == [(50,)]
        for q in QUERIES:
            old = AgencyStore(migrated, agency, FileTexts(tmp_path / "old", ("r",))).search_page(q, 10).to_dict()
            new = AgencyStore(fresh, agency, FileTexts(tmp_path / "new", ("r",))).search_page(q, 10).to_dict()
            assert old == new, (agency, q)
    found = AgencyStore(migrated, "alpha", FileTexts(tmp_path / "old", ("r",))).search_page("needle", 10)
    assert sorted((h["path"], h["match_line"]) for h in found.to_dict()["hits"]) == [  # type: ignore[attr-defined]
        ("a.md", 4), ("a.md", 6), ("c.txt", 1)]
    assert not migrated.execute(f"SELECT 1 FROM {fts.table('alpha')} WHERE {fts.table('alpha')} MATCH 'zzz'").fetchall()
