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
CAMEL_PART = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# A word ending in '+' or '#' signs that no word character follows: C++, C#, F#, g++.
SYMWORD = re.compile(r"(?<![^\W_])([^\W_]+)([+#]+)(?![^\W_+#])")
SIGN_NAMES = {"+": "plus", "#": "sharp"}


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


# ASCII letters, digits and the signs '+' '#' kept, every other character a space:
# ``text.translate(_WORDS).split()`` lists the words at C speed (str.translate has an ASCII fast path).
_WORDS = str.maketrans({chr(c): (chr(c) if chr(c).isalnum() or chr(c) in "+#" else " ") for c in range(128)})
_SIGNED = re.compile(r"([A-Za-z0-9]+)([+#]+)")
_WIDE = re.compile("[\u1100-\U0010ffff]")
# Character classes of ASCII text: 'a' lower, 'A' upper, '0' digit, '+' for '+' and '#', ' ' else.
_CLASSES = str.maketrans({chr(c): ("a" if chr(c).islower() else "A" if chr(c).isupper() else "0"
                                   if chr(c).isdigit() else "+" if chr(c) in "+#" else " ") for c in range(128)})
_LOOK_AT_MOST = 16  # capitals or digits looked at one by one; more: let the word loop decide


def _derivable(ascii_text: str) -> bool:
    """Whether a word of the text can give :func:`derive` a token: a capital after a letter or digit
    (camelCase, HTTPServer), one letter then digits as a whole word (x11), or a '+'/'#'.

    False for prose and lower-case words, found by a translate and a few ``find`` calls at C speed
    (a regex with these alternatives costs more than the word loop it saves).
    """
    classes = "  " + ascii_text.translate(_CLASSES)
    if "+" in classes:
        return True
    for mark in "A0":
        at, looked = classes.find(mark), 0
        while at >= 0:
            before = classes[at - 1]
            if (mark == "A" and before in "aA0") or (mark == "0" and before in "aA" and classes[at - 2] == " "):
                return True
            looked += 1
            if looked > _LOOK_AT_MOST:
                return True
            at = classes.find(mark, at + 1)
    return False


# Words already looked at by derive(), per process: those that give no token, and those that do with
# their tokens. Bounded (short words: a few MB at most); past the bound new words are not remembered.
_PLAIN: set[str] = set()
_GIVES: dict[str, tuple[str, ...]] = {}
_REMEMBER = 60_000


def _word_tokens(word: str) -> tuple[str, ...]:
    """What one word of ASCII letters, digits and '+'/'#' gives: a signed word (c++ → cplusplus-like),
    or its camelCase parts when there are several; () for most words."""
    if "+" in word or "#" in word:
        m = _SIGNED.fullmatch(word)
        return (sign_word(m.group(1), m.group(2)),) if m else ()
    if not word[1:].islower() and not word.isupper() and not word.isdigit():
        parts = camel_parts(word)
        if len(parts) > 1:
            return tuple(parts)
    return ()


def derive(text: str) -> str:
    """Tokens the unicode61 tokenizer cannot see: camelCase parts, C++/C# words, CJK bigrams, emoji.

    Each distinct word of the chunk is looked at once (a set of the words, split at C speed), and
    only when the text has a word that can give a token (:func:`_derivable`); the CJK and emoji
    regexes run only on text that has characters beyond U+1100.
    """
    ascii_view = text if text.isascii() else text.encode("ascii", "replace").decode("ascii")
    out: list[str] = []
    # Words seen before that gave nothing are dropped by one set difference at C speed; the
    # others are looked up, and only words never seen are looked at one by one.
    words = set(ascii_view.translate(_WORDS).split()) - _PLAIN if _derivable(ascii_view) else ()
    for word in words:
        got = _GIVES.get(word)
        if got is None:
            got = _word_tokens(word)
            if len(_PLAIN) + len(_GIVES) < _REMEMBER:
                if got:
                    _GIVES[word] = got
                else:
                    _PLAIN.add(word)
        out.extend(got)
    if ascii_view is not text and _WIDE.search(text):
        for m in CJK_RUN.finditer(text):
            out.extend(cjk_grams(m.group()))
        out.extend(emoji_token(m.group()) for m in EMOJI_CHAR.finditer(text))
    return " ".join(out)
