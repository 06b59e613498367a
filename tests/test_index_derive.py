"""Derived tokens: the marks that pick the words to look at never change what ``derive`` says.

The reference below looks at every word of the text (the rule written out, no shortcut); ``derive``
must give the same tokens, as a multiset, for any text: prose, code, random ASCII and Unicode.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from koradaemon.index import derive as derive_mod
from koradaemon.index.derive import derive

_SIGNED = re.compile(r"([A-Za-z0-9]+)([+#]+)")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_SIGNS = {"+": "plus", "#": "sharp"}


def reference_ascii_tokens(text: str) -> list[str]:
    """Every word looked at, no shortcut: the rule of ``derive`` for ASCII words, written out."""
    view = text.encode("ascii", "replace").decode("ascii")
    words = set(re.sub(r"[^A-Za-z0-9+#]", " ", view).split())
    out: list[str] = []
    for word in words:
        if "+" in word or "#" in word:
            m = _SIGNED.fullmatch(word)
            if m:
                out.append(m.group(1).lower() + "".join(_SIGNS[c] for c in m.group(2)))
        elif not word[1:].islower() and not word.isupper() and not word.isdigit():
            parts = [p.lower() for p in _CAMEL.findall(word)]
            if len(parts) > 1:
                out.extend(parts)
    return sorted(out)


def ascii_part(text: str) -> list[str]:
    """derive's tokens from ASCII words (CJK grams and sym tokens left out)."""
    return sorted(t for t in derive(text).split() if t.isascii() and not t.startswith("sym"))


def assert_both_ways_like_reference(text: str) -> None:
    """Marked words looked at mark by mark, and all at once: each way gives the reference's tokens."""
    expected = reference_ascii_tokens(text)
    saved = derive_mod._MARKS_PER_FILL
    try:
        for per_set in (0, 1 << 40):  # 0: one look per mark; 2**40: all marked words at once
            derive_mod._MARKS_PER_FILL = per_set
            assert ascii_part(text) == expected, per_set
    finally:
        derive_mod._MARKS_PER_FILL = saved


def test_known_words() -> None:
    assert sorted(derive("getUserName x11 C++ c# HTTPServer").split()) == sorted(
        ["get", "user", "name", "x", "11", "cplusplus", "csharp", "http", "server"])


def test_lower_case_prose_and_digits_inside_words_give_nothing() -> None:
    assert derive("the quick brown fox unique123 ab12 12ab\nA sentence Starts here. HTTP 2026") == ""


def test_words_at_the_very_start_and_end_and_beside_non_ascii() -> None:
    assert sorted(derive("x1").split()) == ["1", "x"]
    assert sorted(derive("aB").split()) == ["a", "b"]
    assert derive("C#") == "csharp"
    assert sorted(derive("été getX\u00e9x9\u4e2d").split()) == sorted(["get", "x", "x", "9", "\u4e2d"])
    assert sorted(derive("AB1c A1b a1B").split()) == sorted(["ab", "1", "c", "a", "1", "b"])


def test_a_chunk_full_of_camel_case_takes_all_marked_words_at_once_with_the_same_tokens() -> None:
    text = "self.assertEqual(a, b)\n" * 400 + "x11 C++ unusualName\n"
    assert ascii_part(text) == reference_ascii_tokens(text)
    assert sorted(derive(text).split()) == sorted(["assert", "equal", "x", "11", "cplusplus", "unusual", "name"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([*"aZbY09+# \n_-.xX1é中", "Ab", "ab", "11"]), max_size=40).map("".join))
def test_same_tokens_as_looking_at_every_word(text: str) -> None:
    assert_both_ways_like_reference(text)


_CODE_WORDS = ["self", "assertEqual", "HTTPServer", "x11", "C++", "c#", "i+", "a+b", "SHA256", "utf8", "AB1c",
               "A1b", "a1B", "getX", "__init__", "0xFF", "b64decode", "MAX_SIZE", "Py_DECREF", "é", "中文", "😀"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_CODE_WORDS), st.sampled_from(list(" \n\t.,()[]=+#_-:'\""))),
                max_size=120).map("".join))
def test_code_like_text_same_as_every_word(text: str) -> None:
    assert_both_ways_like_reference(text)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_any_unicode_text_same_as_every_word(text: str) -> None:
    assert_both_ways_like_reference(text)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=300))
def test_random_ascii_same_as_every_word(text: str) -> None:
    assert_both_ways_like_reference(text)


def test_remembered_words_give_the_same_tokens_as_the_first_look() -> None:
    text = "parseHTTPResponse and C++ with x11 and plain words; parseHTTPResponse again, C# too, a+b\n"
    first = sorted(derive(text).split())
    assert {"parse", "http", "response"} <= set(first)
    again = sorted(derive(text).split())  # every looked-at word now remembered (as plain or with its tokens)
    assert again == first
    assert derive_mod._GIVES.get(b"parseHTTPResponse") == ("parse", "http", "response")
    assert b"a+b" in derive_mod._PLAIN  # marked (a letter then '+'), looked at, gives nothing


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="abz019 \n.-_é", max_size=120))
def test_lower_case_text_with_digits_same_as_every_word(text: str) -> None:
    assert_both_ways_like_reference(text)  # the quick answer for prose (no capital, no sign) included


def test_a_text_longer_than_the_marks_cover_gives_the_same_tokens() -> None:
    text = "plain words and getUserName, x11; " * (derive_mod._ONES_BYTES // 30) + "C++ at the end"
    assert len(text) > derive_mod._ONES_BYTES
    assert ascii_part(text) == reference_ascii_tokens(text)


def test_with_the_word_memory_full_new_words_still_give_their_tokens() -> None:
    text = "neverSeenBefore and alsoNewHere, D## x77 and plain prose\n"
    saved = derive_mod._REMEMBER
    derive_mod._REMEMBER = 0  # full: nothing new is remembered
    try:
        assert ascii_part(text) == reference_ascii_tokens(text)
        assert b"neverSeenBefore" not in derive_mod._GIVES
    finally:
        derive_mod._REMEMBER = saved


def reference_wide_tokens(text: str) -> list[str]:
    """CJK grams of every run and a token per emoji, by two passes over the whole text."""
    out = [g for m in derive_mod.CJK_RUN.finditer(text) for g in derive_mod.cjk_grams(m.group())]
    return sorted(out + [derive_mod.emoji_token(m.group()) for m in derive_mod.EMOJI_CHAR.finditer(text)])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([*"ab C→…", "日本語", "の", "中", "😀", "🚀", "\u2500", "\u3297", "\uff70",
                                 "\U00020001", " ", "\n", "x"]), max_size=60).map("".join))
def test_cjk_and_emoji_tokens_same_as_two_passes_over_the_text(text: str) -> None:
    got = sorted(t for t in derive(text).split() if not t.isascii() or t.startswith("sym"))
    assert got == reference_wide_tokens(text)
