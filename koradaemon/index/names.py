"""File names are bytes on Linux: a reversible, unambiguous text form for the ones that are not UTF-8.

Paths arrive from the watcher and the crawl as ``str`` decoded with ``os.fsdecode``: a byte that
is not part of valid UTF-8 becomes a lone surrogate (``b"\\xff"`` → ``"\\udcff"``), which SQLite,
JSON and the audit log cannot encode. The index stores, shows and audits the *shown* form:

- a surrogate-escaped byte ``0x80..0xff`` becomes the four characters ``\\xNN`` (lowercase hex);
- a backslash becomes two backslashes;
- everything else stays as it is.

The mapping works character by character, so it keeps prefixes (``shown(a + b) == shown(a) +
shown(b)``) and ``/``; :func:`fs_name` is its exact inverse and refuses any other escape.
"""

from __future__ import annotations

import re

_NEEDS = re.compile(r"[\\\udc80-\udcff]")
_ESCAPE = re.compile(r"\\(\\|x([89a-f][0-9a-f]))|\\")


def _shown_char(m: re.Match[str]) -> str:
    c = m.group(0)
    return "\\\\" if c == "\\" else f"\\x{ord(c) - 0xDC00:02x}"


def shown_name(fs: str) -> str:
    """The stored and displayed form of a path as ``os.fsdecode`` gives it (always valid UTF-8)."""
    if not _NEEDS.search(fs):
        return fs
    return _NEEDS.sub(_shown_char, fs)


def _fs_char(m: re.Match[str]) -> str:
    if m.group(1) is None:
        raise ValueError("a lone backslash: write it as \\\\")
    if m.group(2) is None:
        return "\\"
    return chr(0xDC00 + int(m.group(2), 16))


def fs_name(shown: str) -> str:
    """The ``os.fsdecode`` form of a shown path (``os.fsencode`` of it gives the original bytes).

    Raises ``ValueError`` for a backslash that is not ``\\\\`` or ``\\x80``..``\\xff``.
    """
    if "\\" not in shown:
        return shown
    return _ESCAPE.sub(_fs_char, shown)
