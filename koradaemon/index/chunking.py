"""Cutting a file's bytes into overlapping chunks at natural boundaries (pure functions).

A chunk is about ``chunk_bytes`` long; consecutive chunks overlap by ``overlap`` bytes.
Cuts are made at a paragraph break, else a line break, else whitespace, searched in
the last quarter before the target; failing all three, at the target moved back to
the start of a UTF-8 sequence. A cut never falls inside a UTF-8 sequence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

CHUNK_BYTES = 51_200
OVERLAP_PERCENT = 10
BINARY_SNIFF_BYTES = 8192


class Buffer(Protocol):
    """What we need from ``bytes`` or ``mmap.mmap``."""

    def __len__(self) -> int: ...
    def __getitem__(self, index: slice) -> bytes: ...
    def rfind(self, sub: bytes, start: int = ..., end: int = ...) -> int: ...
    def find(self, sub: bytes, start: int = ..., end: int = ...) -> int: ...


@dataclass(frozen=True)
class ChunkParams:
    chunk_bytes: int = CHUNK_BYTES
    overlap_percent: int = OVERLAP_PERCENT
    max_file_bytes: int = 256 << 20


@dataclass(frozen=True, slots=True)
class Span:
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


def is_continuation(byte: int) -> bool:
    return byte & 0xC0 == 0x80


def align_back(buf: Buffer, pos: int, lo: int) -> int:
    """Move ``pos`` back (not below ``lo``) to the start of a UTF-8 sequence."""
    while pos > lo and is_continuation(buf[pos : pos + 1][0]):
        pos -= 1
    return pos


def align_forward(buf: Buffer, pos: int, hi: int) -> int:
    while pos < hi and is_continuation(buf[pos : pos + 1][0]):
        pos += 1
    return pos


def find_cut(buf: Buffer, lo: int, target: int) -> int:
    """Best cut position in ``(lo, target]``: just after a paragraph, line or whitespace break."""
    for sep in (b"\n\n", b"\n"):
        hit = buf.rfind(sep, lo, target)
        if hit >= 0:
            return hit + len(sep)
    hit = max(buf.rfind(b" ", lo, target), buf.rfind(b"\t", lo, target))
    if hit >= 0:
        return hit + 1
    return align_back(buf, target, lo + 1)


def find_start(buf: Buffer, pos: int, hi: int) -> int:
    """Start of the next chunk at or after ``pos`` (before ``hi``): after a line break or space if near."""
    for sep in (b"\n", b" "):
        hit = buf.find(sep, pos, hi)
        if hit >= 0:
            return hit + 1
    return align_forward(buf, pos, hi)


def iter_spans(
    buf: Buffer, size: int, chunk_bytes: int = CHUNK_BYTES, overlap_percent: int = OVERLAP_PERCENT
) -> Iterator[Span]:
    """Yield the chunk spans covering ``buf[0:size]``; every byte is in at least one chunk."""
    overlap = chunk_bytes * overlap_percent // 100
    window = chunk_bytes // 4
    start = 0
    while start < size:
        target = start + chunk_bytes
        if target >= size:
            yield Span(start, size - start)
            return
        end = find_cut(buf, max(start + 1, target - window), target)
        yield Span(start, end - start)
        nxt = end - overlap if overlap else end
        if nxt <= start:
            nxt = end
        if nxt < end:
            nxt = find_start(buf, nxt, end)
        start = nxt


def looks_binary(head: bytes) -> bool:
    """A NUL byte in the first few KiB marks a file as binary."""
    return b"\x00" in head[:BINARY_SNIFF_BYTES]
