"""Printing untrusted text safely: file names and snippets come from the watched folders.

Control characters, newlines, invisible format characters (bidi overrides) and undecodable
bytes (surrogate-escaped) are shown as escapes, so one name is always one line and a name
cannot repaint the terminal. A backslash is doubled, so every escape is unambiguous.
"""

from __future__ import annotations

_SIMPLE = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def escape(text: str, *, extra: str = "") -> str:
    """``text`` with every non-printable character escaped; characters in ``extra`` get a backslash."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _SIMPLE:
            out.append(_SIMPLE[ch])
        elif ch in extra:
            out.append("\\" + ch)
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or 0x7F <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif code > 0x7F and _category(ch) in ("Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def _category(ch: str) -> str:
    import unicodedata  # a shared library: loaded only when a name or snippet is not ASCII

    return unicodedata.category(ch)
