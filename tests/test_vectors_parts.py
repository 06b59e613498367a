"""The vector parts on their own: passages, fusion, the embedder against wordllama, the pre-filter."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koradaemon.vectors.codes import CodeIndex
from koradaemon.vectors.embedder import Embedder
from koradaemon.vectors.fusion import rrf
from koradaemon.vectors.model import (
    load_tokenizer,
    load_via_wordllama,
    load_weights,
    prepare_cache_dir,
    quantize_rows,
)
from koradaemon.vectors.passages import split_passages


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    files = prepare_cache_dir(tmp_path_factory.mktemp("model"))
    rows, scales = quantize_rows(load_weights(files, 256))  # as the daemon loads them
    return Embedder(load_tokenizer(files), rows, files.name, scales)


def test_int8_rows_keep_the_float16_vectors(embedder: Embedder, tmp_path: Path) -> None:
    files = prepare_cache_dir(tmp_path / "model")
    full = load_weights(files, 256)
    assert not full.flags.writeable and not full.flags.owndata  # the file's pages, not a copy
    half = Embedder(embedder.tokenizer, full, files.name)  # float16 as shipped
    texts = [b"x", b"the car engine needs repair", ("word " * 300).encode(), b"naive cafe Strasse"]
    assert np.all((half.embed(texts) * embedder.embed(texts)).sum(axis=1) > 0.9999)
    assert load_weights(files, 128).flags.c_contiguous and load_weights(files, 128).shape == (len(full), 128)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab é\n\n€ xyz"), max_size=4000), st.integers(0, 10_000))
def test_passages_cover_the_chunk_with_checked_ranges(text: str, base: int) -> None:
    data = text.encode()
    ps = split_passages(data, base, 256)
    assert b"".join(data[p.offset - base : p.offset - base + p.length] for p in ps) == data
    for p in ps:
        piece = data[p.offset - base : p.offset - base + p.length]
        assert hashlib.sha256(piece).hexdigest() == p.sha256
        piece.decode("utf-8")  # never cut inside a UTF-8 sequence
        assert 0 < p.length <= 256


def test_passages_are_about_the_configured_size() -> None:
    data = ("word " * 2000).encode()
    ps = split_passages(data, 0, 1536)
    assert all(1152 <= p.length <= 1536 for p in ps[:-1])


def test_rrf_fuses_by_chunk_and_rewards_agreement() -> None:
    def hit(path: str, seq: int = 0) -> dict[str, object]:
        return {"root": "notes", "path": path, "seq": seq}

    kw = [hit("a"), hit("b"), hit("c")]
    vec = [hit("c"), hit("d"), hit("a"), hit("a", 1)]  # another chunk of the same file is another hit
    out = rrf({"keyword": kw, "vector": vec}, 10)
    assert [(h["path"], h["seq"]) for h in out] == [("a", 0), ("c", 0), ("b", 0), ("d", 0), ("a", 1)]
    assert out[0]["ranks"] == {"keyword": 1, "vector": 3}
    assert out[0]["score"] == round(1 / 61 + 1 / 63, 6)
    assert len(rrf({"keyword": kw, "vector": vec}, 2)) == 2


def test_embedder_agrees_with_wordllama_load(embedder: Embedder, tmp_path: Path) -> None:
    wl = load_via_wordllama(tmp_path / "cache")  # the package's own loader, downloads disabled
    assert (tmp_path / "cache" / "tokenizers").is_dir() and (tmp_path / "cache" / "weights").is_dir()
    texts = ["the car engine needs repair", "automobile maintenance schedule", "bake bread with yeast"]
    theirs = wl.embed(texts, norm=True)  # type: ignore[attr-defined]
    ours = embedder.embed([t.encode() for t in texts])
    assert np.allclose((theirs * ours).sum(axis=1), 1.0, atol=1e-4)
    for i, t in enumerate(texts):
        assert float(embedder.embed_query(t) @ ours[i]) == pytest.approx(1.0, abs=1e-5)


def test_embedder_ranks_paraphrases(embedder: Embedder) -> None:
    docs = ["Take the vehicle to a mechanic when the engine knocks; change the motor oil.",
            "Knead the dough, let it rise overnight and bake the loaf in a hot oven.",
            "Sow carrots and lettuce, water the seedlings and pull the weeds."]
    d = embedder.embed([t.encode() for t in docs])
    for query, want in (("car repair", 0), ("making bread", 1), ("growing vegetables", 2)):
        assert int(np.argmax(d @ embedder.embed_query(query))) == want, query


def test_embedder_survives_many_new_words(embedder: Embedder) -> None:
    # 75 k distinct words: the word cache resets on the way
    texts = [" ".join(f"w{i}x{j}" for j in range(300)).encode() for i in range(250)]
    out = embedder.embed(texts)
    assert out.shape == (250, 256) and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert not embedder.embed([b"", b"  ...  "]).any()  # no words: zero vectors


def test_prefilter_keeps_the_exact_top_ten(embedder: Embedder) -> None:
    lib = Path(os.__file__).parent  # real text that is on every machine running these tests
    text = b"".join(p.read_bytes() for p in sorted(lib.glob("*.py"))[:120])[:4_000_000]
    texts = [text[i : i + 1500] for i in range(0, len(text), 1500)]
    vecs = np.concatenate([embedder.embed(texts[b : b + 256]) for b in range(0, len(texts), 256)])
    index = CodeIndex(32)
    index.add((i, embedder.codes(vecs[i]).tobytes()) for i in range(len(vecs)))
    rng = np.random.default_rng(7)
    found = asked = 0
    for _ in range(60):
        words = texts[int(rng.integers(len(texts)))].split()
        start = int(rng.integers(max(1, len(words) - 5)))
        qv = embedder.embed_query(b" ".join(words[start : start + 4]).decode("utf-8", "replace"))
        if not qv.any():
            continue
        exact = set(np.argsort(-(vecs @ qv))[:10].tolist())
        found += len(exact & set(index.candidates(embedder.codes(qv).tobytes(), 512)))
        asked += 10
    assert asked >= 300 and found / asked >= 0.9, found / asked
    index.remove(range(100))
    assert len(index) == len(vecs) - 100
    assert not set(index.candidates(embedder.codes(vecs[0]).tobytes(), len(vecs))) & set(range(100))


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=600) | st.text(alphabet=st.sampled_from("ab_9 é\n.-€x"), max_size=400).map(str.encode))
def test_numpy_word_spans_follow_the_query_rule(data: bytes) -> None:
    from koradaemon.vectors.embedder import WORD, word_spans

    starts, ends = word_spans(data)
    assert [data[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)] == WORD.findall(data)


def test_batch_and_query_paths_agree_on_long_and_non_ascii_words(embedder: Embedder) -> None:
    text = "naïve café " + "x" * 150 + " Straße 東京"
    assert float(embedder.embed([text.encode()])[0] @ embedder.embed_query(text)) == pytest.approx(1.0, abs=1e-5)
    marked = "odd\u2581word and plain words"  # holds the tokenizer's own word marker: the one-call path gives up
    assert float(embedder.embed([marked.encode()])[0] @ embedder.embed_query(marked)) == pytest.approx(1.0, abs=1e-5)


def test_word_cache_serves_the_same_tokens_as_tokenising_afresh(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Batches that mix known and new words, short and long, through merges into the cache and one
    # reset of it: every text's vector equals the one from tokenising its words directly (no cache).
    from koradaemon.vectors import embedder as emb_mod

    files = prepare_cache_dir(tmp_path_factory.mktemp("model-cache"))
    fresh = Embedder(load_tokenizer(files), load_weights(files, 128), files.name)
    rng = np.random.default_rng(7)
    vocab = [("".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz_0123456789é"), int(rng.integers(1, 14))))
              if i % 3 else f"w{i}") for i in range(6000)]
    limit = emb_mod.MAX_CACHED_WORDS
    emb_mod.MAX_CACHED_WORDS = 2500  # small, so the batches below fill it and it starts over once
    try:
        for batch in range(4):
            texts = [" ".join(vocab[int(j)] for j in rng.integers(0, 1500 * (batch + 1), 60)) for _ in range(40)]
            got = fresh.embed([t.encode() for t in texts])
            want = np.stack([fresh.embed_query(t) for t in texts])
            assert np.allclose((got * want).sum(axis=1), 1.0, atol=1e-5), batch
    finally:
        emb_mod.MAX_CACHED_WORDS = limit
    assert fresh.cached_words <= 2500


def test_code_index_returns_the_nearest_codes_by_hamming_distance_as_it_grows_and_shrinks() -> None:
    # Brute force over the same codes decides; the index reuses its buffers across queries,
    # additions (more passages than its buffers hold) and removals.
    rng = np.random.default_rng(3)
    index = CodeIndex(32)
    codes: dict[int, bytes] = {}
    next_id = 0
    for size in (50, 3000, 6000):
        new = {next_id + i: rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for i in range(size)}
        next_id += size
        codes.update(new)
        index.add(new.items())
        gone = [int(i) for i in rng.choice(list(codes), 10, replace=False)]
        index.remove(gone)
        for i in gone:
            del codes[i]
        for _ in range(3):
            query = rng.integers(0, 256, 32, dtype=np.uint8)
            dist = {i: int(np.unpackbits(np.frombuffer(c, np.uint8) ^ query).sum()) for i, c in codes.items()}
            got = index.candidates(query.tobytes(), 40)
            assert len(got) == min(40, len(codes)) == len(set(got)) and set(got) <= set(codes)
            if len(codes) > 40:
                worst = max(dist[i] for i in got)
                assert all(d >= worst for i, d in dist.items() if i not in got)  # nothing nearer left out


@settings(max_examples=80, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=70).map(lambda b: bytes(c if c > 0x20 else 0x61 for c in b)),
                max_size=40), st.integers(1, 7))
def test_word_sequences_are_the_words_decoded_and_joined(words: list[bytes], per_seq: int) -> None:
    # Any bytes (invalid UTF-8, sequences cut in two), laid out in a buffer with other bytes between:
    # the numpy-built strings equal decoding each word on its own and joining them by spaces.
    from koradaemon.vectors.embedder import word_sequences

    buf, starts, ends = b"", [], []
    for w in words:
        buf += b"\xe2\n"  # a truncated sequence and a separator before each word
        starts.append(len(buf))
        buf += w
        ends.append(len(buf))
    got = word_sequences(buf, np.array(starts, np.int64), np.array(ends, np.int64), per_seq)
    decoded = [w.decode("utf-8", "replace") for w in words]
    assert got == [" ".join(decoded[i : i + per_seq]) for i in range(0, len(decoded), per_seq)]


def test_tokenising_on_two_threads_gives_the_same_vectors(tmp_path: Path) -> None:
    # Two embedders with empty word caches, one tokenising its new words on two threads: the same
    # vectors, bit for bit, over batches of many new words (and a word holding the word marker).
    import threading

    files = prepare_cache_dir(tmp_path / "model")
    rows, scales = quantize_rows(load_weights(files, 256))
    one, two = (Embedder(load_tokenizer(files), rows, files.name, scales) for _ in range(2))
    rng = np.random.default_rng(5)
    letters = list("abcdefghijklmnopqrstuvwxyz_0123456789éß東")
    words = ["".join(rng.choice(letters, int(rng.integers(1, 16)))) for _ in range(3000)]
    for batch in range(3):
        texts = [" ".join(words[int(j)] for j in rng.integers(0, 1000 * (batch + 1), 80)).encode() for _ in range(40)]
        texts.append("odd\u2581word in between".encode())
        assert np.array_equal(one.embed(texts), two.embed(texts, split=True)), batch
    helpers = [t for t in threading.enumerate() if t.name.startswith("kora-vectors-helper")]
    assert len(helpers) == 1 and one.cached_words == two.cached_words
    assert two.helper_cpu_s > 0 and one.helper_cpu_s == 0  # the step counts the helper's CPU as its own
    two.close()
    assert not helpers[0].is_alive()
    assert np.array_equal(one.embed([b"after close"]), two.embed([b"after close"], split=True))
    two.close()
