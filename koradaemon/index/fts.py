"""Per-agency full-text tables and the extra tokens that make code, CJK and emoji findable.

Every agency has its own FTS5 table, ``fts_<agency_id>``, created the first time one of
its documents is written. Matching, BM25 statistics (row count, document frequencies,
average length) and query cost of one agency therefore never depend on another's data.
An agency removed from the configuration keeps its table (like its document rows) until
the operator purges it, so re-adding it needs no reindex.

Columns: ``body`` (the chunk's text, unicode61 tokens), ``extra`` (derived tokens, see
:func:`derive`) and ``line`` (UNINDEXED: the 1-based line number where the chunk starts).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable

import apsw

from ..paths import check_agency_id

TOKENIZER = "unicode61 remove_diacritics 2"

# Known tables per connection: saves a schema lookup per document and per search.
_KNOWN: weakref.WeakKeyDictionary[apsw.Connection, set[str]] = weakref.WeakKeyDictionary()

CJK = (
    "\u1100-\u11ff\u2e80-\u2fdf\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u31a0-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\ua960-\ua97f\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
)
EMOJI = "\u2190-\u21ff\u2300-\u23ff\u2460-\u27bf\u2900-\u297f\u2b00-\u2bff\u3030\u303d\u3297\u3299\U0001f000-\U0001faff"
CJK_RUN = re.compile(f"[{CJK}]+")
EMOJI_CHAR = re.compile(f"[{EMOJI}]")
# An identifier with an inner lower→upper change (camelCase, parseHTTPHeader, XMLReader).
CAMEL = re.compile(r"(?<![A-Za-z0-9])[A-Za-z][A-Za-z0-9]*?(?:[a-z0-9][A-Z]|[A-Z][A-Z][a-z])[A-Za-z0-9]*")
CAMEL_PART = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# A word ending in '+' or '#' signs that no word character follows: C++, C#, F#, g++.
SYMWORD = re.compile(r"(?<![^\W_])([^\W_]+)([+#]+)(?![^\W_+#])")
SIGN_NAMES = {"+": "plus", "#": "sharp"}
# Anything that matches one of these needs derived tokens; plain text skips the per-kind passes.
_NEEDS = re.compile(f"[{CJK}{EMOJI}+#]|[a-z0-9][A-Z]|[A-Z][A-Z][a-z]")


def table(agency_id: str) -> str:
    """The quoted table name of an agency (the id is validated first: it becomes part of SQL)."""
    return f'"fts_{check_agency_id(agency_id)}"'


def exists(conn: apsw.Connection, agency_id: str) -> bool:
    known = _KNOWN.setdefault(conn, set())
    if agency_id in known:
        return True
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (f"fts_{check_agency_id(agency_id)}",)
    ).fetchone()
    if row:
        known.add(agency_id)
    return row is not None


def ensure(conn: apsw.Connection, agency_id: str) -> str:
    """Create the agency's table if needed (inside the caller's transaction); returns its name."""
    name = table(agency_id)
    if not exists(conn, agency_id):
        conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {name} USING fts5(body, extra, line UNINDEXED,"
                     f" tokenize = '{TOKENIZER}')")
        _KNOWN.setdefault(conn, set()).add(agency_id)
    return name


def forget(conn: apsw.Connection) -> None:
    """Drop the per-connection cache (after a rollback that may have undone a CREATE)."""
    _KNOWN.pop(conn, None)


def insert(conn: apsw.Connection, agency_id: str, rows: Iterable[tuple[int, str, int]]) -> None:
    """Insert ``(rowid, text, start_line)`` rows; derived tokens are computed here."""
    name = ensure(conn, agency_id)
    conn.executemany(
        f"INSERT INTO {name}(rowid, body, extra, line) VALUES (?, ?, ?, ?)",
        ((rowid, text, derive(text), line) for rowid, text, line in rows),
    )


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
    return [r[0][4:] for r in rows]


def optimize(conn: apsw.Connection) -> None:
    """Merge FTS5 segments of every agency's table; run when idle, never on the hot path."""
    for agency_id in agencies(conn):
        name = table(agency_id)
        conn.execute(f"INSERT INTO {name}({name}, rank) VALUES ('merge', 500)")


# -- derived tokens ------------------------------------------------------------------
def sign_word(word: str, signs: str) -> str:
    return word.lower() + "".join(SIGN_NAMES[c] for c in signs)


def cjk_grams(run: str) -> list[str]:
    """Bigrams of a CJK run, plus its last character alone (so a one-character query finds it)."""
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)] + [run[-1]]


def emoji_token(ch: str) -> str:
    return f"sym{ord(ch):x}"


def camel_parts(ident: str) -> list[str]:
    return [p.lower() for p in CAMEL_PART.findall(ident)]


def derive(text: str) -> str:
    """Tokens the unicode61 tokenizer cannot see: camelCase parts, C++/C# words, CJK bigrams, emoji.

    Plain prose returns "" after one regex scan, so the cost is paid only by text that needs it.
    """
    if not _NEEDS.search(text):
        return ""
    out: list[str] = []
    for m in CAMEL.finditer(text):
        out.extend(camel_parts(m.group()))
    if "+" in text or "#" in text:
        out.extend(sign_word(m.group(1), m.group(2)) for m in SYMWORD.finditer(text))
    for m in CJK_RUN.finditer(text):
        out.extend(cjk_grams(m.group()))
    out.extend(emoji_token(m.group()) for m in EMOJI_CHAR.finditer(text))
    return " ".join(out)
