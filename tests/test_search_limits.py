"""Every search has a time limit and prefix expansion is capped (3,000 files of random words)."""

from __future__ import annotations

import random
import string
import time

import pytest
from search_util import new_db, put_texts, store_of

from koradaemon.errors import QueryError, QueryTooExpensive
from koradaemon.index import search
from koradaemon.index.query import parse
from koradaemon.index.store import AgencyStore

LIMIT_S = 0.005
SLACK_S = 0.5  # one FTS5 prefix set-up runs inside a single VM step and cannot be interrupted


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> AgencyStore:
    rnd = random.Random(1)
    words = ["".join(rnd.choice(string.ascii_lowercase) for _ in range(rnd.randrange(3, 9))) for _ in range(30_000)]
    conn = new_db(tmp_path_factory.mktemp("lim"))
    texts = [(f"f{i}.txt", " ".join(rnd.choices(words, k=300)) + f" needle{i}") for i in range(3000)]
    put_texts(conn, "alpha", texts)
    return store_of(conn, "alpha")


@pytest.mark.parametrize("raw", [False, True])
def test_one_letter_prefixes_are_refused_at_once(store: AgencyStore, raw: bool) -> None:
    t0 = time.monotonic()
    with pytest.raises(QueryError, match="too short") as err:
        store.search_page(" OR ".join(f"{c}*" for c in string.ascii_lowercase[:8]), raw=raw)
    assert err.value.exit_code == 64 and time.monotonic() - t0 < 0.1, "refused before any SQL"
    with pytest.raises(QueryError, match="at most 8 prefix terms"):
        store.search_page(" OR ".join(f"{c}{c}*" for c in string.ascii_lowercase), raw=raw)


@pytest.mark.parametrize(
    ("query", "raw"),
    [(" OR ".join(f"{c}{d}*" for c, d in zip("abcdefgh", "eiouaeio", strict=True)), False),
     (" OR ".join(f"{c}{d}*" for c, d in zip("abcdefgh", "eiouaeio", strict=True)), True),
     (" OR ".join(f"{c}{d}*" for c, d in zip("stpmrlnc", "aeiouaei", strict=True)), False)],
)
def test_pathological_queries_stop_at_the_time_limit(store: AgencyStore, query: str, raw: bool) -> None:
    t0 = time.monotonic()
    with pytest.raises(QueryTooExpensive, match="query too expensive") as err:
        store.search_page(query, 10, raw=raw, time_limit=LIMIT_S)
    assert err.value.exit_code == 75
    assert time.monotonic() - t0 < LIMIT_S + SLACK_S
    assert [h.path for h in store.search_page("needle17", 10, time_limit=1.0).hits] == ["f17.txt"], \
        "the connection answers the next query"


def test_a_search_using_more_cpu_than_slow_s_calls_on_slow_once(store: AgencyStore,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    assert store.texts is not None
    search.run(store.conn, "alpha", parse("needle17"), on_slow=lambda: calls.append(1), texts=store.texts)
    assert calls == [], "a cheap search keeps its priority"
    monkeypatch.setattr(search, "SLOW_S", 0.0)
    search.run(store.conn, "alpha", parse("needle1*"), on_slow=lambda: calls.append(1), texts=store.texts)
    assert calls == [1]
