"""Turning text into unit vectors: batch tokenisation through a word cache, pooling in numpy.

The model is a static embedding: a text's vector is the mean of its tokens' vectors.
The shipped tokenizer runs BPE over a whole passage as one unit (no pre-tokeniser), at
about 1.5 MB/s here; so we cut text into words, tokenise each distinct word once (as it
reads after a space) and keep its token ids in a bounded cache. A batch of passages is
then a few numpy gathers and one sum per passage. Punctuation and whitespace carry no
meaning for retrieval and are left out.

Binary codes (the sign of each dimension, packed) serve the in-memory
pre-filter of :mod:`.codes`; exact cosine re-ranks its candidates.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from itertools import chain, repeat
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# Words on the UTF-8 bytes (faster than on str, and no decoding): ASCII word characters and any
# non-ASCII bytes, so accented and non-Latin words stay whole; a longer run is cut into pieces of 64.
WORD = re.compile(rb"[\w\x80-\xff]{1,64}")
MAX_CACHED_WORDS = 30_000

F32 = npt.NDArray[np.float32]
F16 = npt.NDArray[np.float16]


class Embedder:
    def __init__(self, tokenizer: Tokenizer, weights: F16 | F32, name: str) -> None:
        self.tokenizer = tokenizer
        self.weights = weights  # float16 as shipped: half the memory; a batch converts only the rows it uses
        self.dims = int(weights.shape[1])
        self.name = name
        self._lock = threading.Lock()  # the word cache is the batch path's; queries do not touch it
        self._reset_cache()

    def _reset_cache(self) -> None:
        self._words: dict[bytes, int] = {}
        self._start = np.zeros(1024, np.int64)
        self._count = np.zeros(1024, np.int64)
        self._ids = np.zeros(4096, np.int32)
        self._nids = 0

    def _learn(self, new: list[bytes]) -> None:
        """Tokenise words not in the cache yet (each as it reads after a space) and remember their ids."""
        if len(self._words) + len(new) > MAX_CACHED_WORDS:
            self._reset_cache()
        encs = self.tokenizer.encode_batch_fast([w.decode("utf-8", "replace") for w in new], add_special_tokens=False)
        n0 = len(self._words)
        need_w = n0 + len(new)
        if need_w > len(self._start):
            size = max(need_w, 2 * len(self._start))
            self._start = np.resize(self._start, size)
            self._count = np.resize(self._count, size)
        lists = [e.ids for e in encs]
        total = sum(len(x) for x in lists)
        if self._nids + total > len(self._ids):
            self._ids = np.resize(self._ids, max(self._nids + total, 2 * len(self._ids)))
        pos = self._nids
        for k, (word, ids) in enumerate(zip(new, lists, strict=True)):
            self._words[word] = n0 + k
            self._start[n0 + k] = pos
            self._count[n0 + k] = len(ids)
            self._ids[pos : pos + len(ids)] = ids
            pos += len(ids)
        self._nids = pos

    def _token_ids(self, words: list[bytes]) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
        """Token ids of ``words`` in order and each word's token count, through the cache."""
        wid = np.fromiter(map(self._words.get, words, repeat(-1)), np.int64, len(words))
        missing = np.flatnonzero(wid < 0)
        if len(missing):
            new = list(dict.fromkeys(words[i] for i in missing.tolist()))
            if len(self._words) + len(new) > MAX_CACHED_WORDS:  # full: start over with this batch's words
                self._reset_cache()
                new = list(dict.fromkeys(words))
                self._learn(new)
                wid = np.fromiter(map(self._words.__getitem__, words), np.int64, len(words))
            else:
                self._learn(new)
                get = self._words.__getitem__
                wid[missing] = [get(words[i]) for i in missing.tolist()]
        counts = self._count[wid]
        ends = np.cumsum(counts)
        total = int(ends[-1]) if len(ends) else 0
        offs = np.repeat(self._start[wid] - (ends - counts), counts) + np.arange(total)
        return self._ids[offs], counts

    def embed(self, texts: Sequence[bytes]) -> F32:
        """Unit vectors of ``texts`` (UTF-8; a text without words gets the zero vector)."""
        out = np.zeros((len(texts), self.dims), np.float32)
        if not texts:
            return out
        per_text = [WORD.findall(t) for t in texts]
        words = list(chain.from_iterable(per_text))
        if not words:
            return out
        with self._lock:
            tokens, counts = self._token_ids(words)
        ends_w = np.cumsum(counts)
        n_words = np.fromiter(map(len, per_text), np.int64, len(per_text))
        last_word = np.cumsum(n_words)
        tok_end = np.where(last_word > 0, ends_w[np.maximum(last_word - 1, 0)], 0)
        tok_start = np.concatenate(([0], tok_end[:-1]))
        used = np.zeros(len(self.weights), bool)
        used[tokens] = True
        rows = np.flatnonzero(used)
        remap = np.zeros(len(self.weights), np.int32)
        remap[rows] = np.arange(len(rows), dtype=np.int32)
        table = self.weights[rows].astype(np.float32)  # only this batch's vocabulary, in float32
        local = remap[tokens]
        for i, (a, b) in enumerate(zip(tok_start.tolist(), tok_end.tolist(), strict=True)):
            if b > a:
                np.sum(table[local[a:b]], axis=0, out=out[i])
        return normalize(out)

    def embed_query(self, text: str) -> F32:
        """One query's unit vector; tokenises its words directly (no shared cache, no lock)."""
        words = [w.decode("utf-8", "replace") for w in WORD.findall(text.encode("utf-8", "replace"))]
        vec = np.zeros(self.dims, np.float32)
        if words:
            encs = self.tokenizer.encode_batch_fast(words, add_special_tokens=False)
            ids = np.fromiter((i for e in encs for i in e.ids), np.int64)
            if len(ids):
                vec = self.weights[ids].astype(np.float32).sum(axis=0)
        one: F32 = normalize(vec[None, :])[0]
        return one

    def quantize(self, vectors: F32) -> npt.NDArray[np.int8]:
        """int8 vectors for storage: each scaled so its largest component is ±127 (cosine ignores scale)."""
        peak = np.abs(vectors).max(axis=-1, keepdims=True)
        np.maximum(peak, 1e-12, out=peak)
        out: npt.NDArray[np.int8] = np.rint(vectors * (127.0 / peak)).astype(np.int8)
        return out

    def codes(self, vectors: F32) -> npt.NDArray[np.uint8]:
        """Packed sign bits: ``dims / 8`` bytes each (centring on the vocabulary mean kept fewer true neighbours)."""
        return np.packbits(vectors > 0, axis=-1)


def normalize(matrix: F32) -> F32:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    out: F32 = (matrix / norms).astype(np.float32, copy=False)
    return out
