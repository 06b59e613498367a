"""Text encodings of indexed files (pure functions): UTF-8, UTF-16 with a BOM, legacy single-byte.

The rule, the same for indexing and for reading a chunk back:

* a file starting with a UTF-16 byte-order mark (FF FE or FE FF) is UTF-16 (little or big
  endian); its chunks are cut at even byte offsets and never inside a surrogate pair;
* otherwise each chunk is UTF-8 if it decodes as UTF-8, else cp1252 (Windows-1252, a
  superset of Latin-1's printable range; the five bytes cp1252 leaves undefined are read as
  Latin-1).

Chunk references stay byte ranges of the original file whatever its encoding.
"""

from __future__ import annotations

import codecs

from .chunking import Buffer, Span

BOMS = {b"\xff\xfe": "utf-16-le", b"\xfe\xff": "utf-16-be"}


def _latin1(err: UnicodeError) -> tuple[str, int]:
    assert isinstance(err, UnicodeDecodeError)
    return err.object[err.start : err.end].decode("latin-1"), err.end


codecs.register_error("kora-latin1", _latin1)


def utf16_codec(head: bytes) -> str | None:
    """The UTF-16 codec named by a byte-order mark at the start of a file, else None."""
    return BOMS.get(bytes(head[:2]))


def decode(raw: bytes, codec: str | None, at_start: bool) -> str:
    """Text of a chunk's bytes; ``codec`` from :func:`utf16_codec` of the file's first bytes."""
    if codec:
        text = raw.decode(codec, "replace")
        return text[1:] if at_start and text.startswith("\ufeff") else text
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "kora-latin1")


def count_lines(raw: bytes, codec: str | None) -> int:
    """Line breaks in ``raw`` (whole code units for UTF-16)."""
    return raw.decode(codec, "replace").count("\n") if codec else raw.count(b"\n")


def _rfind_unit(buf: Buffer, sub: bytes, lo: int, hi: int) -> int:
    """Last position of ``sub`` in [lo, hi) that is at an even (code unit) offset, or -1."""
    end = hi
    while True:
        pos = buf.rfind(sub, lo, end)
        if pos < 0 or pos % 2 == 0:
            return pos
        end = pos + len(sub) - 1


def _low_surrogate(buf: Buffer, pos: int, le: bool) -> bool:
    unit = buf[pos : pos + 2]
    return len(unit) == 2 and 0xDC <= unit[1 if le else 0] <= 0xDF


def iter_spans_utf16(buf: Buffer, size: int, chunk_bytes: int, overlap_percent: int, codec: str) -> list[Span]:
    """Chunk spans of a UTF-16 file: like :func:`~.chunking.iter_spans`, in whole code units."""
    le = codec.endswith("le")
    nl, sp = (b"\n\x00", b" \x00") if le else (b"\x00\n", b"\x00 ")
    chunk_bytes -= chunk_bytes % 2
    overlap = (chunk_bytes * overlap_percent // 100) & ~1
    spans: list[Span] = []
    start = 0
    while start < size:
        target = start + chunk_bytes
        if target >= size:
            spans.append(Span(start, size - start))
            break
        lo = max(start + 2, target - chunk_bytes // 4)
        end = -1
        for sep in (nl, sp):
            hit = _rfind_unit(buf, sep, lo, target)
            if hit >= 0:
                end = hit + 2
                break
        if end < 0:
            end = target - 2 if _low_surrogate(buf, target, le) else target
        spans.append(Span(start, end - start))
        nxt = end - overlap if overlap else end
        if nxt <= start:
            nxt = end
        if _low_surrogate(buf, nxt, le):
            nxt += 2
        start = nxt
    return spans
