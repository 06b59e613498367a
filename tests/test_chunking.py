from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from koradaemon.index.chunking import iter_spans, looks_binary


def check_cover(data: bytes, chunk: int, overlap: int) -> list[tuple[int, int]]:
    spans = [(s.offset, s.end) for s in iter_spans(data, len(data), chunk, overlap)]
    if not data:
        assert spans == []
        return spans
    assert spans[0][0] == 0 and spans[-1][1] == len(data)
    for (a0, a1), (b0, b1) in itertools.pairwise(spans):
        assert a0 < b0 <= a1 < b1, "chunks advance, overlap or touch, and never leave a gap"
    for a, b in spans:
        data[a:b].decode("utf-8")  # never inside a UTF-8 sequence
    return spans


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab é日\n\t𝄞")), max_size=20_000),
       st.sampled_from([1024, 4096]), st.sampled_from([0, 10, 50]))
def test_spans_cover_and_respect_utf8(text: str, chunk: int, overlap: int) -> None:
    check_cover(text.encode(), chunk, overlap)


def test_default_geometry_and_boundaries() -> None:
    para = ("word " * 200 + "\n\n").encode()
    data = para * 200
    spans = check_cover(data, 51_200, 10)
    for a, b in spans[:-1]:
        assert data[b - 2 : b] == b"\n\n", "cut at a paragraph break"
        assert 38_400 <= b - a <= 51_200
    starts = [a for a, _ in spans[1:]]
    for (_a0, a1), b0 in zip(spans, starts, strict=False):
        assert a1 - b0 >= 4000, "about 10 % overlap"


def test_no_whitespace_falls_back_to_utf8_boundary() -> None:
    data = ("é" * 80_000).encode()
    spans = check_cover(data, 51_200, 10)
    assert len(spans) == 4


def test_binary_sniff() -> None:
    assert looks_binary(b"abc\x00def")
    assert not looks_binary("plain text é".encode())
