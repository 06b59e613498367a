"""The query language: what people type never reaches FTS5 syntax or an SQLite message."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from search_util import new_db, put_texts, store_of

from koradaemon.errors import QueryError, QueryTooExpensive
from koradaemon.index.query import parse
from koradaemon.index.store import AgencyStore

TEXTS = [
    ("a.cpp", "I write C++ and C# code; foo.bar() calls snake_case_name and getUserName.\n"),
    ("b.txt", "x-ray of alice@example.com at https://example.com/a/b in path/to/file.txt\n"),
    ("c.txt", "plain c and a text about rays, AND or NOT\n"),
    ("j.txt", "これは日本語のテキストです。 emoji 😀 party\n"),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> AgencyStore:
    conn = new_db(tmp_path_factory.mktemp("q"))
    put_texts(conn, "alpha", TEXTS)
    return store_of(conn, "alpha")


@pytest.mark.parametrize(
    ("text", "fts"),
    [
        ("fox", '("fox")'),
        ("quick fox", '("quick") AND ("fox")'),
        ('"quick fox"', '("quick fox")'),
        ('"unbalanced quote', '("unbalanced quote")'),
        ("fo*", '("fo"*)'),
        ("fox -dog", '(("fox")) NOT "dog"'),
        ("fox OR dog cat", '("fox" OR "dog") AND ("cat")'),
        ("C++", '("cplusplus")'),
        ("foo.bar()", '("foo bar")'),
        ("日本語", '("日本 本語")'),
        ("AND NOT", '("AND") AND ("NOT")'),
    ],
)
def test_typed_queries_become_quoted_fts5(text: str, fts: str) -> None:
    assert parse(text).fts == fts


def test_filters_are_parsed() -> None:
    q = parse('fox ext:.MD -ext:txt path:"my notes" -path:old')
    assert (q.exts, q.not_exts, q.paths, q.not_paths) == (["md"], ["txt"], ["my notes"], ["old"])
    assert q.fts == '("fox")'


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("   ", "empty"), ("-fox", "only exclusions"), ("*", "no words"), ("!!! ---", "no words"),
     ("a*", "too short"), (" ".join(f"p{i}*" for i in range(9)), "prefix terms"), ("x" * 2001, "longer than")],
)
def test_the_one_usage_error(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=message) as err:
        parse(text)
    assert err.value.exit_code == 64


@pytest.mark.parametrize(
    ("text", "paths"),
    [("C++", ["a.cpp"]), ("c#", ["a.cpp"]), ("foo.bar", ["a.cpp"]), ("snake_case_name", ["a.cpp"]),
     ("user", ["a.cpp"]), ("getUserName", ["a.cpp"]), ("x-ray", ["b.txt"]), ("alice@example.com", ["b.txt"]),
     ("https://example.com/a/b", ["b.txt"]), ("path/to/file.txt", ["b.txt"]), ("日本語", ["j.txt"]),
     ("テキスト", ["j.txt"]), ("😀", ["j.txt"]), ("rays -C++", ["c.txt"]), ("ext:cpp code", ["a.cpp"]),
     ("path:j. 日本", ["j.txt"]), ("-path:a.cpp and", ["c.txt"]), ("AND", ["a.cpp", "c.txt"])],
)
def test_code_and_identifiers_are_findable(store: AgencyStore, text: str, paths: list[str]) -> None:
    assert sorted(h.path for h in store.search(text)) == paths


def test_highlights_are_ranges_into_the_snippet(store: AgencyStore) -> None:
    (hit,) = store.search("user snake")
    marked = sorted(hit.snippet[a:b] for a, b in hit.highlights)
    assert marked == ["User", "snake"], "a camelCase part and a snake_case part"
    (hit,) = store.search("C++ foo.bar")
    assert sorted(hit.snippet[a:b] for a, b in hit.highlights) == ["C++", "bar", "foo"]


def test_raw_fts5_only_behind_the_flag(store: AgencyStore) -> None:
    assert [h.path for h in store.search("NEAR(write code, 3)", raw=True)] == ["a.cpp"]
    assert store.search("NEAR(write code, 3)") == [], "typed: NEAR is a word, the punctuation is not syntax"
    with pytest.raises(QueryError, match="bad FTS5 query"):
        store.search("foo AND", raw=True)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60) | st.lists(st.sampled_from(
    ['"', "-", "*", "OR", "AND", "NOT", "NEAR", "(", ")", ":", "^", "+", "path:", "ext:", "日本", "😀", "C++", " ",
     "a", "fo", "\x00", "\\", "'", "{", "}", "col:", "\u0301", "_", "."]), max_size=12).map("".join))
def test_no_query_string_produces_an_sqlite_message(store: AgencyStore, text: str) -> None:
    try:
        page = store.search_page(text, 5)
    except QueryError as exc:  # the one documented usage error
        assert exc.exit_code == 64
        assert "fts5" not in str(exc).lower() and "sqlite" not in str(exc).lower() and "column" not in str(exc)
        return
    except QueryTooExpensive:
        return
    assert page.total >= len(page.hits)


def test_filters_need_no_database_for_parsing(tmp_path: Path) -> None:
    conn = new_db(tmp_path)
    assert store_of(conn, "nobody").search("anything") == [], "an agency without a table has no hits"
