"""Snippets find their first match by string search where that is the regular expression's answer."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from koradaemon.index.query import parse
from koradaemon.index.snippets import Highlighter, first_match, make_snippet, pattern_for

PIECES = ["get", "User", "user", "Name", "name", "_", "-", " ", "\n", ".", "C++", "c", "#", "self", "Self",
          "SELF", "myself", "x", "9", "(", "é", "über", "日本", "语"]
WORDS = ["user", "name", "self", "getUserName", "c++", "x", "usern*", "sel*", '"user name"', '"get user"',
         "uber", "日本", "über", '"name self"*', "us*", "9", "x9"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=60), st.lists(st.sampled_from(WORDS), min_size=1, max_size=3))
def test_first_match_is_the_regex_search(pieces: list[str], words: list[str]) -> None:
    text = "".join(pieces)
    q = parse(" ".join(words))
    for sources, needles in ((q.highlight, q.needles), (q.anchor, q.anchor_needles)):
        pattern = pattern_for(tuple(sources))
        if pattern is None:
            continue
        want = pattern.search(text)
        got = first_match(text, pattern, tuple(needles))
        assert (got.span() if got else None) == (want.span() if want else None), (text, sources)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=80), st.lists(st.sampled_from(WORDS), min_size=1, max_size=3))
def test_highlighter_gives_the_regular_expressions_snippet(pieces: list[str], words: list[str]) -> None:
    text = "".join(pieces)
    q = parse(" ".join(words))
    want = make_snippet(text, pattern_for(tuple(q.highlight)), pattern_for(tuple(q.anchor)))
    if not want[1] and not text.isascii():
        want = make_snippet(text, pattern_for(tuple(q.highlight_accented)), pattern_for(tuple(q.anchor_accented)))
    assert Highlighter(q).snippet(text) == want, (text, q.highlight, q.anchor)


def test_the_window_is_cut_around_the_first_match_of_a_long_chunk() -> None:
    text = "filler words here\n" * 3000 + "the getUserName call\n" + "more text\n" * 100
    q = parse("user")
    snippet, ranges, at = make_snippet(text, pattern_for(tuple(q.highlight)), needles=tuple(q.needles))
    assert at == text.index("UserName")
    assert [snippet[a:b] for a, b in ranges] == ["User"]
    assert snippet.startswith("…") and snippet.endswith("…") and len(snippet) <= 162
    q = parse('"getUserName call"')
    assert re.search("getUserName call", make_snippet(text, pattern_for(tuple(q.highlight)),
                                                      pattern_for(tuple(q.anchor)), needles=tuple(q.needles),
                                                      anchor_needles=tuple(q.anchor_needles))[0])
