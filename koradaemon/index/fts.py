"""Per-agency full-text tables and the extra tokens that make code, CJK and emoji findable.

Every agency has its own FTS5 table, ``fts_<agency_id>`` (see :func:`bare_name`), created the first time one of
its documents is written. Matching, BM25 statistics (row count, document frequencies,
average length) and query cost of one agency therefore never depend on another's data.
An agency removed from the configuration keeps its table (like its document rows) until
the operator purges it, so re-adding it needs no reindex.

Columns: ``body`` (the chunk's text, unicode61 tokens) and ``extra`` (derived tokens, see
:func:`derive`). The tables are contentless (``content=''``): they hold the index only, never the
text, which is read back from the file when needed (a search's snippets, ``get_chunk``; see
:mod:`.retrieval`). ``contentless_delete=1`` lets a rewritten or removed file's rows be deleted by
rowid without their old text. The line a chunk starts on is in ``chunks.line``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import apsw

from ..paths import check_agency_id
from .derive import CJK_RUN as CJK_RUN
from .derive import EMOJI_CHAR as EMOJI_CHAR
from .derive import SYMWORD as SYMWORD
from .derive import cjk_grams as cjk_grams
from .derive import derive as derive
from .derive import emoji_token as emoji_token
from .derive import sign_word as sign_word

TOKENIZER = "unicode61 remove_diacritics 2"

# Known tables per connection: saves a schema lookup per document and per search.
_KNOWN: weakref.WeakKeyDictionary[apsw.Connection, set[str]] = weakref.WeakKeyDictionary()


def bare_name(agency_id: str) -> str:
    """``fts_`` + the agency id with each '_' doubled (the id is validated first: it becomes part of SQL).

    FTS5 names its shadow tables ``<table>_data``, ``_idx``, ``_content``, ``_docsize``,
    ``_config``: agency ``a``'s ``fts_a_data`` must never be agency ``a_data``'s table, and with
    doubled underscores a table name never has a single '_' after the prefix.
    """
    return "fts_" + check_agency_id(agency_id).replace("_", "__")


def table(agency_id: str) -> str:
    """The quoted table name of an agency."""
    return f'"{bare_name(agency_id)}"'


def exists(conn: apsw.Connection, agency_id: str) -> bool:
    known = _KNOWN.setdefault(conn, set())
    if agency_id in known:
        return True
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (bare_name(agency_id),)
    ).fetchone()
    if row:
        known.add(agency_id)
    return row is not None


def ensure(conn: apsw.Connection, agency_id: str) -> str:
    """Create the agency's table if needed (inside the caller's transaction); returns its name."""
    name = table(agency_id)
    if not exists(conn, agency_id):
        create(conn, name)
        _KNOWN.setdefault(conn, set()).add(agency_id)
    return name


# A segment becomes due for merging once this share (%) of its rows is deleted. FTS5's default, 10,
# re-merges a big segment again and again while a burst rewrites its files (a branch switch): each
# merge rewrites the segment for a tenth of it deleted. Deleted rows are dropped by every merge
# anyway (automerge of a level, the writer's merging in quiet moments).
DELETE_MERGE_PERCENT = 50


def create(conn: apsw.Connection, name: str) -> None:
    """Create a per-agency table named ``name`` (quoted): contentless, rows deletable by rowid."""
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {name} USING fts5(body, extra, tokenize = '{TOKENIZER}',"
                 " content = '', contentless_delete = 1)")
    conn.execute(f"INSERT INTO {name}({name}, rank) VALUES ('deletemerge', ?)", (DELETE_MERGE_PERCENT,))


def forget(conn: apsw.Connection) -> None:
    """Drop the per-connection cache (after a rollback that may have undone a CREATE)."""
    _KNOWN.pop(conn, None)


def insert(conn: apsw.Connection, agency_id: str, rows: Iterable[tuple[int, str, str]]) -> None:
    """Insert ``(rowid, text, derived tokens)`` rows (tokens from :func:`derive`, computed by the
    chunking worker so the writer thread does not pay for them). The text is indexed, not kept."""
    name = ensure(conn, agency_id)
    conn.executemany(f"INSERT INTO {name}(rowid, body, extra) VALUES (?, ?, ?)", rows)


def delete_rows(conn: apsw.Connection, agency_id: str, rowids: Iterable[tuple[int]]) -> None:
    """Delete chunks' rows by rowid (one executemany; contentless_delete: no old text needed)."""
    if exists(conn, agency_id):
        conn.executemany(f"DELETE FROM {table(agency_id)} WHERE rowid = ?", rowids)


def delete_document(conn: apsw.Connection, agency_id: str, doc_id: int) -> None:
    if not exists(conn, agency_id):
        return
    conn.execute(
        f"DELETE FROM {table(agency_id)} WHERE rowid IN"
        " (SELECT id FROM chunks WHERE document_id = ? AND agency_id = ?)",
        (doc_id, agency_id),
    )


def agencies(conn: apsw.Connection) -> list[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'fts_*'"
                        " AND sql LIKE 'CREATE VIRTUAL TABLE%'")
    return [r[0][4:].replace("__", "_") for r in rows]


def optimize(conn: apsw.Connection) -> None:
    """Merge FTS5 segments of every agency's table; run when idle, never on the hot path."""
    for agency_id in agencies(conn):
        name = table(agency_id)
        conn.execute(f"INSERT INTO {name}({name}, rank) VALUES ('merge', 500)")


def merge_step(conn: apsw.Connection, pages: int) -> bool:
    """One short step of merging (about ``pages`` pages per table, only levels holding 'usermerge'
    segments or more); False when no table had anything to merge."""
    worked = False
    for agency_id in agencies(conn):
        name = table(agency_id)
        before = conn.total_changes()
        conn.execute(f"INSERT INTO {name}({name}, rank) VALUES ('merge', ?)", (pages,))
        worked = worked or conn.total_changes() - before >= 2  # FTS5: 2 or more changes = work done
    return worked
