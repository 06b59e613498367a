"""Derived tokens: what the unicode61 tokenizer cannot see (camelCase parts, C++/C#, CJK, emoji).

The FTS column ``extra`` (see :mod:`.fts`) holds, per chunk, the tokens :func:`derive` gives:

* each distinct ASCII word (a run of letters, digits, '+' and '#') that is camelCase
  (``getUserName`` → get user name, ``HTTPServer`` → http server), one letter then digits
  (``x11`` → x 11), or letters/digits followed by signs (``C++`` → cplusplus, ``C#`` → csharp);
* bigrams of CJK runs (plus the run's last character) and one ``sym<hex>`` token per emoji.

Speed (this runs over every byte indexed): the words that can give a token are found by
arithmetic on the chunk's bytes at C speed (:func:`_marks`); only those words are looked at, one
mark at a time, or, when a chunk has many marks, all marked words at once (:func:`_marked_words`).
"""

from __future__ import annotations

import re
from itertools import chain

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


_SIGNED = re.compile(r"([A-Za-z0-9]+)([+#]+)")
_WIDE = re.compile("[\u1100-\U0010ffff]")


def word_tokens(word: str) -> tuple[str, ...]:
    """What one word of ASCII letters, digits and '+'/'#' gives: a signed word (c++ → cplusplus),
    or its camelCase parts when there are several; () for most words. The rule itself."""
    if "+" in word or "#" in word:
        m = _SIGNED.fullmatch(word)
        return (sign_word(m.group(1), m.group(2)),) if m else ()
    if not word[1:].islower() and not word.isupper() and not word.isdigit():
        parts = camel_parts(word)
        if len(parts) > 1:
            return tuple(parts)
    return ()


# -- finding the words that can give a token, at C speed ------------------------------------
# Each byte of a chunk becomes one flag byte (bytes.translate), the flag bytes one big integer
# (big-endian), and shifts and ANDs of that integer mark, in one
# pass over all bytes at once, every byte where a token-giving word shows (bit 0 of the byte).
_LD, _UP, _AN, _SG, _LO, _DI, _NW, _DS = (1 << k for k in range(8))


def _flags(c: int) -> int:
    ch = chr(c)
    if c >= 128 or not (ch.isalnum() or ch in "+#"):  # non-ASCII bytes separate words ('?' before)
        return _NW | _DS
    if ch in "+#":
        return _SG
    if ch.islower():
        return _LD | _AN | _LO
    if ch.isupper():
        return _UP | _AN
    return _LD | _AN | _DI | _DS


# bit 0 lower-or-digit, 1 upper, 2 letter-or-digit, 3 sign, 4 lower, 5 digit, 6 no word character,
# 7 digit or no word character.
_FLAGS = bytes(_flags(c) for c in range(256))
_SEPARATOR = _NW | _DS  # the flag byte of every character outside words
_WORD_VIEW = bytes(c if _FLAGS[c] != _SEPARATOR else 0x20 for c in range(256))
_NOT_DIGIT = bytes(c for c in range(256) if not 48 <= c <= 57)
_LOOK_AT_MOST = 16
_ONES_BYTES = 1 << 18  # chunks are ~50 KB; a longer text takes the set of all its words
_ONES = int.from_bytes(b"\x01" * _ONES_BYTES, "little")  # bit 0 of every byte (AND keeps the shorter)
_BITS_0_2 = _ONES * 0x05
_BITS_4 = _ONES * 0x10


def _marks(c: int) -> int:
    """Bit 0 of byte i set where a word that may give a token shows (a superset, never missing one):

    * lower/digit then upper (``tU``, ``2U``: camelCase, ``a1B``);
    * upper, upper, lower/digit (``HTTPs``, ``AB1c``);
    * letter/digit then '+'/'#' (``C++``, ``C#``);
    * a whole word of one lower-case letter then digits (``x11``): no word character before,
      a digit after, then a digit or no word character.

    ``c``: the flag bytes, big-endian (byte i+1 is 8 bits below byte i: ``c << (8 - k)`` puts the
    next byte's bit k at bit 0). Every word giving a token has one of these marks (see
    :func:`word_tokens`); the word itself decides.
    """
    c7 = c << 7  # the next byte's bit k + 1 at bit k
    pairs = c & c7  # bit 0: lower/digit, upper; bit 2: letter/digit, sign; bit 4: lower, digit
    upper_upper = (c >> 1) & c7 & (c << 16)  # bit 0: upper, upper, lower/digit
    x11 = pairs & (c >> 10) & (c << 13)  # bit 4, also: no word character before, digit or none after
    marks = (pairs & _BITS_0_2) | (x11 & _BITS_4) | upper_upper
    return (marks | (marks >> 2) | (marks >> 4)) & _ONES


def _marked_words(padded: bytes, c: int, marks: int) -> set[bytes]:
    """The words holding a mark, every occurrence at once (for chunks with many marks).

    In big-endian order an addition carries towards the start of the text: adding the marks to
    the word bytes (0xFF each) carries from each mark through its word and leaves 1 in the byte
    just before it. Those bytes, set to 0xFF in the text (never a UTF-8 byte), start each marked
    word for one regex ``findall``.
    """
    n = len(padded)
    ones = _ONES >> (8 * (_ONES_BYTES - n))
    words = (ones ^ ((c >> 6) & ones)) * 255  # 0xFF for each byte of a word, 0 elsewhere
    carried = (words + marks) ^ words  # 0xFF/0xFE from each marked word's start to its last mark, 1 before
    before = (carried ^ (carried >> 1)) & carried & ones  # bytes holding exactly 1: just before a word
    text = int.from_bytes(padded, "big") | (before * 255)
    return set(_MARKED_WORD.findall(text.to_bytes(n, "big")))


# Words already looked at, per process: those that give no token and those that do with their
# tokens. Bounded (short words: a few MB at most); past the bound new words are not remembered.
_PLAIN: set[bytes] = set()
_GIVES: dict[bytes, tuple[str, ...]] = {}
_REMEMBER = 60_000
_MARKS_PER_FILL = 160  # more marks than 1 byte in this many: _marked_words is cheaper than one look per mark
_MARKED_WORD = re.compile(rb"\xff([A-Za-z0-9+#]+)")


def _tokens_of(words: set[bytes] | dict[bytes, None], out: list[str]) -> None:
    """Each word's tokens once: remembered words at C speed, new ones looked at (and remembered)."""
    known = set(words).difference(_PLAIN)  # a set minus a set, then minus a dict: C speed, over ``words``
    for word in known.difference(_GIVES):
        got = word_tokens(word.decode("ascii"))
        if len(_PLAIN) + len(_GIVES) < _REMEMBER:
            if got:
                _GIVES[word] = got
            else:
                _PLAIN.add(word)
        elif got:  # memory full: not remembered, so not found below
            out.extend(got)
    out.extend(chain.from_iterable(map(_GIVES.__getitem__, filter(_GIVES.__contains__, known))))


def _nothing_to_mark(raw: bytes) -> bool:
    """Quick answer for prose (most small files): True when no word can give a token because the
    text has no capital and no sign, and no word that is one lower-case letter then digits."""
    if not raw.islower() or b"+" in raw or b"#" in raw:  # islower: no ASCII capital (and some letter)
        return False
    digits = raw.translate(None, _NOT_DIGIT)
    if not digits:
        return True
    if len(digits) > _LOOK_AT_MOST:
        return False  # many digits: let the marks decide
    for digit in set(digits):  # a word like x11: a digit after a lower-case letter that starts a word
        at = raw.find(digit)
        while at >= 0:
            if at and 97 <= raw[at - 1] <= 122 and (at < 2 or _FLAGS[raw[at - 2]] == _SEPARATOR):
                return False
            at = raw.find(digit, at + 1)
    return True


def _ascii_tokens(raw: bytes, out: list[str]) -> None:
    if _nothing_to_mark(raw):
        return
    # One separator before and two after: the x11 mark looks one byte back and two ahead.
    padded = b" " + raw + b"  "
    flags = padded.translate(_FLAGS)
    n = len(padded)
    if n > _ONES_BYTES:  # longer than any chunk; the rule is the same
        _tokens_of(set(padded.translate(_WORD_VIEW).split()) - _PLAIN, out)
        return
    c = int.from_bytes(flags, "big")
    marks = _marks(c)
    if not marks:
        return
    if marks.bit_count() * _MARKS_PER_FILL > n:
        # Many marks (a test file full of assertEqual): every marked word at once, at C speed.
        _tokens_of(_marked_words(padded, c, marks), out)
        return
    words: dict[bytes, None] = {}
    at = marks.to_bytes(n, "big")
    find, rfind, next_mark = flags.find, flags.rfind, at.find
    pos = next_mark(1)
    while pos >= 0:
        end = find(_SEPARATOR, pos)
        words[padded[rfind(_SEPARATOR, 0, pos) + 1 : end]] = None
        pos = next_mark(1, end)
    _tokens_of(words, out)


def derive(text: str) -> str:
    """Tokens the unicode61 tokenizer cannot see: camelCase parts, C++/C# words, CJK bigrams, emoji.

    Each distinct token-giving word of the chunk gives its tokens once (see :func:`word_tokens`);
    the CJK and emoji regexes run only on text that has characters beyond U+1100.
    """
    out: list[str] = []
    _ascii_tokens(text.encode("utf-8", "surrogatepass"), out)
    if not text.isascii():
        _wide_tokens(text, out)
    return " ".join(out)


def _wide_tokens(text: str, out: list[str]) -> None:
    """CJK grams and emoji tokens, looked for only where characters beyond U+1100 are (code and
    prose have a few arrows or dashes here and there: two regex passes over all of it cost more)."""
    search, cjk_run, emoji = _WIDE.search, CJK_RUN.match, EMOJI_CHAR.match
    wide = search(text)
    while wide is not None:
        at = wide.start()
        run = cjk_run(text, at)  # a run cannot start earlier: its first character is wide too
        if run is not None:
            out.extend(cjk_grams(run.group()))
            at = run.end()
        else:
            if emoji(text, at) is not None:
                out.append(emoji_token(text[at]))
            at += 1
        wide = search(text, at)
