"""Derived tokens: the quick test that skips the word loop never changes what ``derive`` says."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from koradaemon.index.fts import derive

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


def test_known_words() -> None:
    assert sorted(derive("getUserName x11 C++ c# HTTPServer").split()) == sorted(
        ["get", "user", "name", "x", "11", "cplusplus", "csharp", "http", "server"])


def test_lower_case_prose_and_digits_inside_words_give_nothing() -> None:
    assert derive("the quick brown fox unique123 ab12 12ab\nA sentence Starts here. HTTP 2026") == ""


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([*"aZbY09+# \n_-.xX1é中", "Ab", "ab", "11"]), max_size=40).map("".join))
def test_same_tokens_as_looking_at_every_word(text: str) -> None:
    got = sorted(t for t in derive(text).split() if t.isascii() and not t.startswith("sym"))
    assert got == reference_ascii_tokens(text)


def test_remembered_words_give_the_same_tokens_as_the_first_look() -> None:
    from koradaemon.index import fts

    text = "parseHTTPResponse and C++ with x11 and plain words; parseHTTPResponse again, C# too\n"
    first = sorted(fts.derive(text).split())
    assert {"parse", "http", "response"} <= set(first)
    again = sorted(fts.derive(text).split())  # every word now remembered (as plain or with its tokens)
    assert again == first
    assert fts._GIVES.get("parseHTTPResponse") == ("parse", "http", "response")
    assert "plain" in fts._PLAIN
