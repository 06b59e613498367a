"""Files in every encoding are indexed through the real preparation path, with byte-exact references."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from koradaemon.index.db import open_db
from koradaemon.index.prepare import ChunkParams, prepare_index
from koradaemon.index.retrieval import ChunkRef, FileTexts, read_chunk_text
from koradaemon.index.store import AgencyStore
from koradaemon.index.writer import Writer

ROOT = "notes"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Path, Writer]]:
    open_db(tmp_path / "k.db").close()
    writer = Writer(tmp_path / "k.db")
    writer.start()
    (tmp_path / ROOT).mkdir()
    yield tmp_path, writer
    writer.stop()


def index(tmp: Path, writer: Writer, rel: str, data: bytes, params: ChunkParams | None = None) -> AgencyStore:
    (tmp / ROOT / rel).write_bytes(data)
    job = prepare_index("a", ROOT, rel, tmp / ROOT / rel, None, params or ChunkParams(), bulk=False)
    assert job is not None
    writer.submit(job)
    writer.flush()
    return AgencyStore(open_db(tmp / "k.db"), "a", FileTexts(tmp, (ROOT,)))


def check_refs(tmp: Path, store: AgencyStore, query: str, data: bytes) -> list[str]:
    """Every hit's reference is a byte range of the original file whose sha256 matches; returns the texts."""
    texts = []
    for h in store.search_page(query, 100).hits:
        raw = data[h.byte_offset : h.byte_offset + h.byte_length]
        assert hashlib.sha256(raw).hexdigest() == h.sha256
        ref = ChunkRef(h.root, h.path, h.byte_offset, h.byte_length, h.sha256)
        texts.append(read_chunk_text(tmp, (ROOT,), ref))
    assert texts, f"{query!r} found nothing"
    return texts


@pytest.mark.parametrize(
    ("codec", "data", "query"),
    [
        ("latin-1", "Ein Maß für Größe und Café crème\n".encode("latin-1"), "größe cafe"),
        ("cp1252", "“Smart quotes” — naïve façade € price\n".encode("cp1252"), '"smart quotes" naive'),
        ("utf-16 LE with BOM", "\ufeffUnicode façade 日本語のテキストです\n".encode("utf-16-le"), "facade 日本語"),
        ("utf-16 BE with BOM", "\ufeffUnicode façade 日本語のテキストです\n".encode("utf-16-be"), "unicode テキスト"),
    ],
)
def test_legacy_and_utf16_files_are_decoded(env: tuple[Path, Writer], codec: str, data: bytes, query: str) -> None:
    tmp, writer = env
    store = index(tmp, writer, "f.txt", data)
    assert store.document(ROOT, "f.txt").skipped is None, codec  # type: ignore[union-attr]
    (text,) = check_refs(tmp, store, query, data)
    assert text.rstrip("\n") == text_of(data).rstrip("\n")
    (hit,) = store.search(query)
    marked = [hit.snippet[a:b].lower() for a, b in hit.highlights]
    assert len(marked) >= 2 and all(m in text.lower() for m in marked), "accented words are highlighted too"


def text_of(data: bytes) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252")


def test_big_utf16_file_chunks_at_code_units_with_line_numbers(env: tuple[Path, Writer]) -> None:
    tmp, writer = env
    lines = [f"line {i} 日本語 ünïcode 😀 text" for i in range(4000)]
    data = ("\ufeff" + "\n".join(lines) + "\nfinal needle here\n").encode("utf-16-le")
    store = index(tmp, writer, "big.txt", data, ChunkParams(chunk_bytes=8192))
    assert store.stats()["chunks"] > 10
    (text,) = check_refs(tmp, store, "needle", data)
    assert text.endswith("final needle here\n")
    (hit,) = store.search("needle")
    assert hit.match_line == 4001 and hit.byte_offset % 2 == 0 and hit.byte_length % 2 == 0
    for h in store.search_page("日本語", 100).hits:
        raw = data[h.byte_offset : h.byte_offset + h.byte_length]
        assert "\ufffd" not in raw.decode("utf-16-le", "replace")[1:], "never cut inside a surrogate pair"
    line_of = {h.match_line for h in store.search_page('"line 1234"', 10).hits}
    assert line_of == {1235}


def test_cjk_substrings_and_emoji(env: tuple[Path, Writer]) -> None:
    tmp, writer = env
    data = "これは日本語のテキストです。中文分词很难。한국어 텍스트. Party 🎉 time\n".encode()
    store = index(tmp, writer, "cjk.txt", data)
    for q in ("日本語", "テキスト", "本語のテ", "分词", "한국어", "🎉"):
        assert [h.path for h in store.search(q)] == ["cjk.txt"], q
    (hit,) = store.search("日本語")
    assert [hit.snippet[a:b] for a, b in hit.highlights] == ["日本語"]
    assert store.search("語日") == [], "bigrams keep the order"
