"""Cutting a chunk into passages: the units that get one embedding each (pure functions).

A passage is a window of about ``passage_bytes`` inside one 50 KB chunk, cut at a
paragraph, line or whitespace boundary and never inside a UTF-8 sequence (the same
rules as chunks, without overlap). Each passage has its own byte range in the file
and its own sha256, so a hit can be served and checked like a chunk reference.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..index.chunking import iter_spans


@dataclass(frozen=True, slots=True)
class Passage:
    offset: int  # in the file
    length: int
    sha256: str
    data: bytes  # the passage's bytes, as the embedder takes them


def split_passages(chunk: bytes, chunk_offset: int, passage_bytes: int) -> list[Passage]:
    """The passages of ``chunk`` (which starts at ``chunk_offset`` in its file), in order, covering it."""
    out: list[Passage] = []
    for span in iter_spans(chunk, len(chunk), passage_bytes, 0):
        data = chunk[span.offset : span.end]
        out.append(Passage(chunk_offset + span.offset, span.length, hashlib.sha256(data).hexdigest(), data))
    return out
