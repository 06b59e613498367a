"""Ranking: tenant isolation of BM25 statistics and cost, the exact top 10, the bounded candidate rule."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest
from search_util import data_root, new_db, put_texts, store_of, zipf_texts

from koradaemon.index import counts, fts, ranking, search
from koradaemon.index.query import parse

QUERIES = ["w0", "w5 w40", '"w1 w2"', "w12*", "w7 OR w300", "w3 -w4", "uniqa3"]


def alpha_view(conn: apsw.Connection) -> dict[str, list[tuple[str, float, int]]]:
    store = store_of(conn, "alpha")
    out = {}
    for q in QUERIES:
        steps = [0]

        def count(steps: list[int] = steps) -> bool:
            steps[0] += 1
            return False

        # search.run installs its own handler; count the VM steps of the same statements separately
        page = store.search_page(q, 10)
        conn.set_progress_handler(count, 1)
        try:
            conn.execute(f"SELECT rowid, bm25({fts.table('alpha')}) FROM {fts.table('alpha')}"
                         f" WHERE {fts.table('alpha')} MATCH ? ORDER BY rowid DESC", (parse(q).fts,)).fetchall()
        finally:
            conn.set_progress_handler(None)
        out[q] = [(h.path, h.bm25, steps[0]) for h in page.hits]
    return out


def db(tmp: Path, name: str) -> apsw.Connection:
    (tmp / name).mkdir()
    return new_db(tmp / name)


def test_another_agency_changes_neither_scores_nor_query_cost(tmp_path: Path) -> None:
    alone = db(tmp_path, "alone")
    put_texts(alone, "alpha", zipf_texts(60, seed=1, prefix="a"))
    beside = db(tmp_path, "beside")  # the same alpha, then a large beta with the same words
    put_texts(beside, "alpha", zipf_texts(60, seed=1, prefix="a"))
    beta = zipf_texts(3000, seed=2, words=120, prefix="b")
    put_texts(beside, "beta", beta)
    before = db(tmp_path, "before")  # beta first: alpha's chunk ids differ, its scores must not
    put_texts(before, "beta", beta)
    put_texts(before, "alpha", zipf_texts(60, seed=1, prefix="a"))
    assert store_of(beside, "beta").search("w0"), "beta holds the same words"
    a, b, c = alpha_view(alone), alpha_view(beside), alpha_view(before)
    for q in QUERIES:
        assert a[q], f"{q!r} finds alpha documents"
        assert a[q] == b[q], f"{q!r}: alpha's hits, BM25 scores or VM steps change with beta's data"
        assert sorted((p, s) for p, s, _ in a[q]) == sorted((p, s) for p, s, _ in c[q])
    plan = " ".join(str(r) for r in beside.execute(
        f"EXPLAIN QUERY PLAN SELECT rowid FROM {fts.table('alpha')} WHERE {fts.table('alpha')} MATCH 'w0'"
        " ORDER BY rowid DESC LIMIT 10"))
    assert "fts_alpha" in plan and "fts_beta" not in plan


def full_bm25_top(conn: apsw.Connection, agency: str, q: str, k: int = 10) -> list[tuple[int, float]]:
    """The reference: FTS5's own ORDER BY rank over every match, with no bound."""
    name = fts.table(agency)
    return [(r[0], r[1]) for r in conn.execute(
        f"SELECT rowid, bm25({name}) FROM {name} WHERE {name} MATCH ? ORDER BY rank LIMIT ?", (parse(q).fts, k))]


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> apsw.Connection:
    conn = new_db(tmp_path_factory.mktemp("big"))
    put_texts(conn, "alpha", zipf_texts(search.CAP * 3, seed=5))
    return conn


def _phrase_with_a_rare_word(conn: apsw.Connection, i: int) -> str:
    """The last common word of document i and its unique word, as a phrase (adjacent tokens)."""
    text = (data_root(conn) / "r" / f"d{i}.txt").read_text()
    return f'"{text.split()[-2]} uniqd{i}"'


@pytest.mark.parametrize("q", ["w200", "w900 w0", '"w0 w1" w150', "w1500 OR w2000", "w300 -w40", "uniqd77 w0",
                               "uniqd3*", "uniqd12*", "uniqd3* w0 -w2", "w0 w0 w700", "PHRASE"])
def test_selective_queries_return_exactly_the_full_bm25_top_10(big: apsw.Connection, q: str) -> None:
    if q == "PHRASE":
        q = _phrase_with_a_rare_word(big, 7)
    page = store_of(big, "alpha").search_page(q, 10)
    ref = full_bm25_top(big, "alpha", q)
    assert page.exact and page.total <= search.CAP
    assert len(ref) == len(page.hits) > 0
    assert [h.chunk_id for h in page.hits] == [r for r, _ in ref] or \
        [h.bm25 for h in page.hits] == [s for _, s in ref], "same order (ties may swap equal scores)"
    assert [h.bm25 for h in page.hits] == [s for _, s in ref]
    assert page.hits[0].score == 100.0 and all(0 < h.score <= 100 for h in page.hits)


def test_a_word_in_most_chunks_ranks_a_bounded_set_and_says_so(big: apsw.Connection) -> None:
    (n,) = big.execute(f"SELECT count(*) FROM {fts.table('alpha')} WHERE {fts.table('alpha')} MATCH 'w0'").fetchone()
    assert n > search.CAP
    page = store_of(big, "alpha").search_page("w0", 10)
    assert not page.exact and page.to_dict()["total_exact"] is False
    assert 0.5 * n <= page.total <= 1.5 * n, f"estimate {page.total} for {n}"
    newest = {r[0] for r in big.execute(
        f"SELECT rowid FROM {fts.table('alpha')} WHERE {fts.table('alpha')} MATCH 'w0' ORDER BY rowid DESC LIMIT ?",
        (search.CAP,))}
    assert {h.chunk_id for h in page.hits} <= newest, "ranked among the newest CAP matches"
    scores = [h.score for h in page.hits]
    assert scores == sorted(scores, reverse=True) and scores[0] == 100.0


def test_rows_left_unscored_by_the_bound_never_change_the_top(big: apsw.Connection) -> None:
    """The scoring functions skip the length lookup of rows that cannot reach the top 10: the
    page is the top 10 of every one of the newest BOUNDED matches scored in full."""
    name = fts.table("alpha")
    ranking.rank(big, name, parse("w0"), 10)  # registers the functions and sets the table's statistics
    avgdl = ranking._stats(big, name)[1]

    def full(api: apsw.FTS5ExtensionApi, *_: object) -> float:
        tf, k1, b = api.inst_count, ranking.K1, ranking.B
        return float(tf * (k1 + 1) / (tf + k1 * (1 - b + b * api.column_size(-1) / avgdl)))

    big.register_fts5_function("test_full_g", full)
    rows = big.execute(f"SELECT rowid, test_full_g({name}) FROM {name} WHERE {name} MATCH 'w0'"
                       " ORDER BY rowid DESC LIMIT ?", (search.BOUNDED,)).fetchall()
    want = [rid for _, rid in sorted((-s, rid) for rid, s in rows)[:10]]
    page = store_of(big, "alpha").search_page("w0", 10)
    assert [h.chunk_id for h in page.hits] == want


def test_a_phrase_of_common_words_is_looked_for_among_the_newest_chunks_of_its_rarest_word(
        big: apsw.Connection) -> None:
    name = fts.table("alpha")
    counts = {w: big.execute(f"SELECT count(*) FROM {name} WHERE {name} MATCH ?", (w,)).fetchone()[0]
              for w in ("w3", "w4")}
    assert min(counts.values()) > search.CAP, "both words are common"
    rarest = min(counts, key=counts.__getitem__)
    window = [r[0] for r in big.execute(f"SELECT rowid FROM {name} WHERE {name} MATCH ? ORDER BY rowid DESC LIMIT ?",
                                         (rarest, search.CAP + 1))]
    matches = {r[0] for r in big.execute(f"SELECT rowid FROM {name} WHERE {name} MATCH ?", ('"w3 w4"',))}
    in_window = {r for r in matches if r >= window[-1]}
    assert len(in_window) >= 10, "the fixture has enough matches in the window"
    page = store_of(big, "alpha").search_page('"w3 w4"', 10)
    assert not page.exact and len(page.hits) == 10
    assert {h.chunk_id for h in page.hits} <= in_window
    assert len(matches) // 2 <= page.total <= 2 * len(matches), f"estimate {page.total} for {len(matches)}"
    scores = [h.score for h in page.hits]
    assert scores == sorted(scores, reverse=True)


def test_a_window_with_too_few_matches_grows_to_older_chunks(tmp_path: Path) -> None:
    conn = new_db(tmp_path)
    old = [(f"old{i}.txt", f"alpha beta gamma old{i}\n") for i in range(3)]  # the phrase, only in the oldest
    new = [(f"new{i}.txt", f"alpha x beta y new{i}\n") for i in range(search.CAP + 500)]
    put_texts(conn, "alpha", old + new)
    page = store_of(conn, "alpha").search_page('"alpha beta"', 10)
    assert sorted(h.path for h in page.hits) == ["old0.txt", "old1.txt", "old2.txt"]
    assert page.total == 3
    assert store_of(conn, "alpha").search_page('"alpha beta" old1', 10).exact


def test_document_frequencies_kept_between_queries_follow_new_data(tmp_path: Path) -> None:
    conn = new_db(tmp_path)  # w0 in more than CAP chunks but fewer than half: its IDF counts
    put_texts(conn, "alpha", [(f"a{i}.txt", "w0 w0 w500\n" if i % 20 == 0 else f"w0 x{i % 50}\n")
                              for i in range(search.CAP + 100)] + [(f"b{i}.txt", f"y{i}\n") for i in range(2400)])
    writer = new_db(tmp_path)  # another connection commits: the reader's kept counts are stale
    store = store_of(conn, "alpha")
    for _ in range(2):
        page = store.search_page("w0 w500", 10)
        assert page.exact and [h.bm25 for h in page.hits] == [s for _, s in full_bm25_top(conn, "alpha", "w0 w500")]
        put_texts(writer, "alpha", [(f"more{i}.txt", "w0 w1\n") for i in range(300)])


def test_offset_pages_through_the_same_ranking(big: apsw.Connection) -> None:
    store = store_of(big, "alpha")
    whole = [h.chunk_id for h in store.search_page("w200", 30).hits]
    paged = [h.chunk_id for o in (0, 10, 20) for h in store.search_page("w200", 10, o).hits]
    assert paged == whole and len(whole) == 30


def test_agency_names_never_meet_another_agencys_shadow_tables(tmp_path: Path) -> None:
    conn = new_db(tmp_path)
    names = ["a", "a_data", "a_content", "a_", "a__idx", "a-config"]
    for i, agency in enumerate(names):
        put_texts(conn, agency, [(f"{agency}.txt", f"shared word{i}\n")])
    assert sorted(fts.agencies(conn)) == sorted(names)
    for agency in names:
        assert [h.path for h in store_of(conn, agency).search("shared")] == [f"{agency}.txt"]
        assert store_of(conn, agency).search_page("shared").total == 1


def test_the_totals_record_gives_fts5s_own_row_count_and_average_length(big: apsw.Connection) -> None:
    name = fts.table("alpha")
    seen: list[tuple[int, float]] = []

    def stats(api: apsw.FTS5ExtensionApi, *args: object) -> int:
        seen.append((api.row_count, api.column_total_size(-1) / api.row_count))
        return 0

    big.register_fts5_function("test_stats", stats)
    big.execute(f"SELECT test_stats({name}) FROM {name} WHERE {name} MATCH 'w0' LIMIT 1").fetchall()
    assert ranking._stats(big, name) == seen[0]


@pytest.mark.parametrize("many", [False, True])
def test_a_prefix_of_words_listed_more_than_cap_times_in_fewer_chunks_is_ranked_exactly(
        tmp_path: Path, many: bool) -> None:
    """Two words in the same chunks (read as their OR), or 300 words three to a chunk (more than
    OR_WORDS: FTS5's merged lists): more than CAP chunks listed for the words, fewer matches."""
    conn = new_db(tmp_path)
    n = search.CAP * 3 // 4
    if many:
        texts = [(f"p{i}.txt", " ".join(f"pfx{(i + k * 101) % 300}" for k in range(3)) + " filler" * (i % 5))
                 for i in range(n)]
    else:
        texts = [(f"p{i}.txt", "pfxa " * (1 + i % 7) + "pfxb filler " * (i % 5) + f"u{i}\n") for i in range(n)]
    put_texts(conn, "alpha", texts + [(f"o{i}.txt", f"other{i % 40} words\n") for i in range(1000)])
    words = ranking._expansion(conn, fts.table("alpha"), "pfx")
    assert sum(d for _, d in words) > search.CAP and (len(words) > ranking.OR_WORDS) == many
    page = store_of(conn, "alpha").search_page("pfx*", 10)
    assert page.exact and page.total == len(texts)
    assert [h.bm25 for h in page.hits] == [s for _, s in full_bm25_top(conn, "alpha", "pfx*")]


@pytest.mark.parametrize("q", ["w1*", "w0*"])  # 1,111 words (merged by FTS5); one word (read as such)
def test_a_prefix_in_more_than_cap_chunks_ranks_its_newest_matches(big: apsw.Connection, q: str) -> None:
    name = fts.table("alpha")
    page = store_of(big, "alpha").search_page(q, 10)
    newest = {r[0] for r in big.execute(f"SELECT rowid FROM {name} WHERE {name} MATCH ? ORDER BY rowid DESC"
                                        " LIMIT ?", (parse(q).fts, search.BOUNDED))}
    assert not page.exact and len(page.hits) == 10
    assert {h.chunk_id for h in page.hits} <= newest
    scores = [h.score for h in page.hits]
    assert scores == sorted(scores, reverse=True) and scores[0] == 100.0


@pytest.mark.parametrize("q", ["w3*", "w10*"])  # 111 words each, one of them in more than CAP chunks
def test_a_common_prefix_ranks_the_same_newest_matches_from_merged_lists_or_its_words_or(
        big: apsw.Connection, q: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One word of the prefix in more than CAP chunks: one scoring pass over the newest BOUNDED
    matches, read from FTS5's merged lists or from the OR of the words, with the same result."""
    words = ranking._expansion(big, fts.table("alpha"), q[:-1])
    assert max(d for _, d in words) > search.CAP and len(words) <= ranking.OR_WORDS
    pages = []
    for per_word in (0, 10**9):  # always the OR / always the merged lists
        monkeypatch.setattr(ranking, "MERGE_PER_WORD", per_word)
        page = store_of(big, "alpha").search_page(q, 10)
        pages.append([(h.chunk_id, h.bm25) for h in page.hits])
        assert not page.exact and max(d for _, d in words) <= page.total <= sum(d for _, d in words)
    assert pages[0] == pages[1] and len(pages[0]) == 10


def test_document_frequencies_are_shared_by_connections_until_the_tables_index_changes(tmp_path: Path) -> None:
    conn, other, writer = new_db(tmp_path), new_db(tmp_path), new_db(tmp_path)
    try:
        put_texts(conn, "alpha", [(f"a{i}.txt", "w0 w0 w500\n" if i % 20 == 0 else f"w0 x{i % 50}\n")
                                  for i in range(search.CAP + 100)] + [(f"b{i}.txt", f"y{i}\n") for i in range(2400)])
        put_texts(conn, "beta", [("b0.txt", "w0\n")])
        name = fts.table("alpha")
        store_of(conn, "alpha").search_page("w0 w500", 10)
        stamp, kept = counts.DF[(conn.filename, name)]
        assert kept == {'"w0"': search.CAP + 100}
        steps = [0]

        def count(steps: list[int] = steps) -> bool:
            steps[0] += 1
            return False

        other.execute("SELECT count(*) FROM sqlite_schema").fetchall()  # its schema read
        other.set_progress_handler(count, 1)
        assert counts.df(other, name, '"w0"') == search.CAP + 100
        assert steps[0] < 100, "the other connection reads the count, it does not count again"
        put_texts(writer, "beta", [("b1.txt", "w0\n")])  # another agency's table: alpha's counts stay
        steps[0] = 0
        assert counts.df(other, name, '"w0"') == search.CAP + 100 and steps[0] < 100
        assert counts.DF[(conn.filename, name)][0] == stamp
        other.set_progress_handler(None)
        put_texts(writer, "alpha", [("new.txt", "w0 w1\n")])
        assert counts.df(other, name, '"w0"') == search.CAP + 101
        page = store_of(conn, "alpha").search_page("w0 w500", 10)
        assert page.exact and [h.bm25 for h in page.hits] == [s for _, s in full_bm25_top(conn, "alpha", "w0 w500")]
    finally:
        for c in (conn, other, writer):
            c.close()


def test_a_common_words_newest_count_is_kept_until_the_tables_index_changes(tmp_path: Path) -> None:
    conn, writer = new_db(tmp_path), new_db(tmp_path)
    try:
        put_texts(conn, "alpha", [(f"a{i}.txt", f"w0 x{i}\n") for i in range(search.CAP + 10)])
        name = fts.table("alpha")
        first = counts.newest_all(conn, name, ['"w0"', '"x3"'], search.CAP)
        assert first['"w0"'][0] == search.CAP + 1 and first['"x3"'][0] == 1
        assert set(counts.NEWEST[(conn.filename, name)][1]) == {('"w0"', search.CAP)}, "only the common word kept"
        steps = [0]

        def count(steps: list[int] = steps) -> bool:
            steps[0] += 1
            return False

        conn.set_progress_handler(count, 1)
        assert counts.newest_all(conn, name, ['"w0"'], search.CAP) == {'"w0"': first['"w0"']}
        assert steps[0] < 100, "read from the cache, not counted again"
        conn.set_progress_handler(None)
        put_texts(writer, "alpha", [(f"n{i}.txt", "w0 new\n") for i in range(5)])
        again = counts.newest_all(conn, name, ['"w0"'], search.CAP)['"w0"']
        (lo,) = conn.execute(f"SELECT min(rowid) FROM (SELECT rowid FROM {name} WHERE {name} MATCH 'w0'"
                             " ORDER BY rowid DESC LIMIT ?)", (search.CAP + 1,)).fetchone()
        assert again == (search.CAP + 1, lo) and lo > first['"w0"'][1], "the window moved to the new chunks"
    finally:
        conn.close()
        writer.close()
