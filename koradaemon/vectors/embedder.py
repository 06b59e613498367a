"""Turning text into unit vectors: words found and looked up in numpy, pooling in numpy.

The model is a static embedding: a text's vector is the mean of its tokens' vectors.
The shipped tokenizer runs BPE over a whole passage as one unit (no pre-tokeniser), at
about 1.5 MB/s here; so we cut text into words, tokenise each distinct word once (as it
reads after a space) and keep its token ids in a bounded cache. Punctuation and
whitespace carry no meaning for retrieval and are left out.

A batch never loops over words in Python: the word boundaries come from a byte table,
each word's 64-bit hash from a few unaligned 64-bit loads, the cache is an open-addressing
hash table in numpy arrays (looked up and filled a whole batch at a time); only words never
seen before are cut out and tokenised. Then a few gathers and one sum per passage.

Binary codes (the sign of each dimension, packed) serve the in-memory
pre-filter of :mod:`.codes`; exact cosine re-ranks its candidates.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import numpy.typing as npt

from .pooling import normalize, pool_sums

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

# A word: a run of ASCII word characters and non-ASCII bytes (so accented and non-Latin words
# stay whole), on the UTF-8 bytes. WORD is the same rule for queries.
MARKER = "\u2581"  # the tokenizer's word marker: it replaces each space and starts each word
MAX_WORD_BYTES = 64  # BPE over one long run (encoded data) would be slow; pieces of 64 bytes
WORD = re.compile(rb"[\w\x80-\xff]{1,64}")
WORD_BYTE = np.zeros(256, bool)
for _b in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    WORD_BYTE[_b] = True
WORD_BYTE[0x80:] = True
MAX_CACHED_WORDS = 200_000  # about 40 bytes each in numpy arrays
TOKENIZE_WORDS = 200  # new words per tokenizer sequence
_LOAD_MASK = np.array([0, *((1 << (8 * r)) - 1 for r in range(1, 8)), (1 << 64) - 1], np.uint64)  # n low bytes
SPLIT_POOL_TEXTS = 16  # a split batch pools on two threads from this many texts

F32 = npt.NDArray[np.float32]
F16 = npt.NDArray[np.float16]
I8 = npt.NDArray[np.int8]
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]


def word_spans(buf: bytes) -> tuple[I64, I64]:
    """(starts, ends) of the words in ``buf``; a run longer than MAX_WORD_BYTES is cut into pieces."""
    is_word = np.zeros(len(buf) + 2, bool)  # a non-word byte either side: edges come in pairs
    np.take(WORD_BYTE, np.frombuffer(buf, np.uint8), out=is_word[1:-1])
    edges = np.flatnonzero(is_word[1:] != is_word[:-1])  # each word's start, then its end
    starts, ends = edges[0::2], edges[1::2]
    pieces = (ends - starts + MAX_WORD_BYTES - 1) // MAX_WORD_BYTES
    if len(pieces) and pieces.max() > 1:  # rare: long identifiers, encoded data
        first = np.cumsum(pieces) - pieces
        k = np.arange(int(pieces.sum())) - np.repeat(first, pieces)
        piece_starts = np.repeat(starts, pieces) + k * MAX_WORD_BYTES
        ends = np.minimum(piece_starts + MAX_WORD_BYTES, np.repeat(ends, pieces))
        starts = piece_starts
    return starts, ends


def word_sequences(buf: bytes, starts: I64, ends: I64, per_seq: int) -> list[str]:
    """The words ``buf[starts[i]:ends[i]]`` joined by single spaces, ``per_seq`` words to a string.

    Built in numpy (no Python object per word): the words' bytes are gathered into one
    buffer with a space after each, cut after every ``per_seq``-th word and each piece
    decoded (invalid UTF-8 replaced). The same strings as decoding each word and joining:
    a space is ASCII, so no bad sequence reaches across it.
    """
    n = len(starts)
    if not n:
        return []
    lengths = ends - starts
    seps = np.cumsum(lengths + 1) - 1  # the space after each word in the joined buffer
    joined = np.full(int(seps[-1]) + 1, 0x20, np.uint8)
    word_bytes = np.ones(len(joined), bool)
    word_bytes[seps] = False
    dest = np.flatnonzero(word_bytes)
    joined[dest] = np.frombuffer(buf, np.uint8)[dest + np.repeat(starts - (seps - lengths), lengths)]
    text = joined.tobytes()
    cuts = [-1, *seps[per_seq - 1 :: per_seq].tolist()]
    if cuts[-1] != int(seps[-1]):
        cuts.append(int(seps[-1]))
    return [text[a + 1 : b].decode("utf-8", "replace") for a, b in itertools.pairwise(cuts)]


class Embedder:
    def __init__(self, tokenizer: Tokenizer, weights: I8 | F16 | F32, name: str, scales: F32 | None = None) -> None:
        self.tokenizer = tokenizer
        # int8 rows with a scale each (model.quantize_rows), or float16 as shipped; a batch converts
        # only the rows it uses to float32
        self.weights = weights
        self.scales = scales
        self.dims = int(weights.shape[1])
        self.name = name
        self._lock = threading.Lock()  # the word cache is the batch path's; queries do not touch it
        self._helper: ThreadPoolExecutor | None = None  # a second thread for a split batch (see embed)
        self.helper_cpu_s = 0.0  # the helper thread's CPU time so far (a batch's cost includes it)
        self._marker = np.zeros(max(len(weights), tokenizer.get_vocab_size()), bool)  # tokens that start a word
        for i in range(tokenizer.get_vocab_size()):  # one id at a time: get_vocab()'s dict left 2.6 MB behind
            token = tokenizer.id_to_token(i)
            if token is not None and token.startswith(MARKER):
                self._marker[i] = True
        self._reset_cache()

    def _reset_cache(self) -> None:
        # The word cache: an open-addressing hash table (linear probing, 0 = empty) from a word's
        # hash to its word index, and per word index its tokens' place in _ids. New words are
        # inserted and appended, never merged into a sorted array: merging re-copied the whole
        # cache (and rebuilt a bucket table over it) on every batch.
        self._keys = np.zeros(1 << 12, np.uint64)
        self._vals = np.zeros(1 << 12, np.int32)
        self._shift = np.uint64(64 - 12)
        self._words = 0
        self._start = np.zeros(1024, np.int32)  # per word index (the first self._words): first token in _ids
        self._count = np.zeros(1024, np.int32)
        self._ids = np.zeros(4096, np.int32)
        self._n_ids = 0

    @property
    def cached_words(self) -> int:
        return self._words

    @staticmethod
    def _hash(buf: bytes, starts: I64, ends: I64) -> U64:
        """A 64-bit hash of each word and its length, from a few passes over the words (not their bytes).

        Each word is read as up to eight unaligned little-endian 64-bit loads (a word is at most
        MAX_WORD_BYTES long), the last one masked to the word's end; each load is mixed in by
        xor, multiply and shift, and murmur3's finaliser spreads the result. Most words fit one
        or two loads, so this costs a few passes over the word list: hashing every byte with its
        position in its word took ten passes over arrays of 8 bytes per text byte.
        """
        lengths = ends - starts
        h: U64 = lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        if not len(lengths):
            return h
        padded = np.zeros(len(buf) + 8, np.uint8)  # every load stays inside
        padded[: len(buf)] = np.frombuffer(buf, np.uint8)
        loads = np.ndarray((len(buf) + 1,), np.dtype("<u8"), padded, 0, (1,))  # a 64-bit load at every byte
        idx = np.arange(len(starts))
        k = 0
        with np.errstate(over="ignore"):
            while len(idx):
                part = loads[starts[idx] + 8 * k]
                part &= _LOAD_MASK[np.minimum(lengths[idx] - 8 * k, 8)]
                part ^= h[idx]
                part *= np.uint64(0xFF51AFD7ED558CCD)
                part ^= part >> np.uint64(29)
                h[idx] = part
                k += 1
                idx = idx[lengths[idx] > 8 * k]
            h ^= h >> np.uint64(33)  # murmur3's finaliser
            h *= np.uint64(0xFF51AFD7ED558CCD)
            h ^= h >> np.uint64(33)
            h *= np.uint64(0xC4CEB9FE1A85EC53)
            h ^= h >> np.uint64(33)
        return h

    def _learn(self, buf: bytes, starts: I64, ends: I64, hashes: U64, split: bool = False) -> None:
        """Tokenise words never seen before (each as it reads after a space) and remember their ids.

        The words are ``buf[starts[i]:ends[i]]``; ``hashes`` their hashes, distinct and not yet in the cache.
        """
        ids, counts = self._tokenize_words(word_sequences(buf, starts, ends, TOKENIZE_WORDS), len(starts), split)
        first, n = self._words, len(starts)
        self._start = _room(self._start, first, n)
        self._count = _room(self._count, first, n)
        self._start[first : first + n] = self._n_ids + np.cumsum(counts) - counts
        self._count[first : first + n] = counts
        self._ids = _room(self._ids, self._n_ids, len(ids))
        self._ids[self._n_ids : self._n_ids + len(ids)] = ids
        self._n_ids += len(ids)
        self._words += n
        if 2 * self._words > len(self._keys):  # at most half full: probes stay short
            size = len(self._keys)
            while 2 * self._words > size:
                size *= 2
            keys, vals = self._keys, self._vals
            used = np.flatnonzero(keys)
            self._keys, self._vals = np.zeros(size, np.uint64), np.zeros(size, np.int32)
            self._shift = np.uint64(64 - (size.bit_length() - 1))
            self._insert(keys[used], vals[used])
        self._insert(hashes, np.arange(first, first + n, dtype=np.int32))

    def _insert(self, hashes: U64, slots: npt.NDArray[np.int32]) -> None:
        """Put distinct hashes that are not in the table yet, all at once, round by round."""
        mask = len(self._keys) - 1
        at = (hashes >> self._shift).astype(np.intp)
        while len(hashes):
            free = np.flatnonzero(self._keys[at] == 0)
            _, first = np.unique(at[free], return_index=True)  # one word per free slot this round
            won = free[first]
            self._keys[at[won]] = hashes[won]
            self._vals[at[won]] = slots[won]
            rest = np.ones(len(hashes), bool)
            rest[won] = False
            hashes, slots, at = hashes[rest], slots[rest], (at[rest] + 1) & mask

    def _tokenize_words(self, seqs: list[str], n_words: int, split: bool = False) -> tuple[npt.NDArray[np.int32], I64]:
        """Token ids of ``n_words`` words (each as it reads after a space), concatenated, and each word's count.

        ``seqs``: the words joined by single spaces, a few hundred to a sequence (see
        :func:`word_sequences`; BPE over a shorter sequence is quicker: 20 % less time than one
        sequence of thousands). One call for all of them: the tokenizer turns each space into
        the word marker, and every word's first token (only that one) starts with the marker.
        A word that itself holds the marker character breaks that rule; then each word is
        encoded on its own.
        """
        encs = self._encode(seqs, split)
        ids = np.concatenate([np.asarray(e.ids, np.int32) for e in encs]) if encs else np.zeros(0, np.int32)
        starts = np.flatnonzero(self._marker[ids])
        if len(starts) == n_words and (not len(starts) or starts[0] == 0):
            return ids, np.diff(np.append(starts, len(ids))).astype(np.int64)
        words = [w for seq in seqs for w in seq.split(" ")]  # a decoded word holds no U+0020
        lists = [e.ids for e in self._encode(words)]
        counts = np.fromiter(map(len, lists), np.int64, len(lists))
        return np.fromiter((i for x in lists for i in x), np.int32, int(counts.sum())), counts

    def _encode(self, texts: list[str], split: bool = False) -> list[Encoding]:
        """The encodings of ``texts``, in order.

        ``split``: the first half of the texts (by length) goes to a helper thread while this
        one encodes the rest. The tokenizer releases the GIL while it works, so on a free core
        the two halves run at once; the caller asks for it only while the keyword pipeline is
        idle. The tokenizer's own thread pool stays off (TOKENIZERS_PARALLELISM, see
        model.load_tokenizer): it cannot be switched per call.
        """
        if not split or len(texts) < 2:
            return self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        ends = np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)))
        half = min(len(texts) - 1, max(1, int(np.searchsorted(ends, ends[-1] / 2))))
        first = self._submit(self.tokenizer.encode_batch_fast, texts[:half], add_special_tokens=False)
        try:
            rest = self.tokenizer.encode_batch_fast(texts[half:], add_special_tokens=False)
        finally:
            head = first.result()  # always waited for: the next batch never overlaps this one
        return [*head, *rest]

    def _submit(self, fn: Callable[..., _T], *args: object, **kwargs: object) -> Future[_T]:
        """``fn(*args, **kwargs)`` on the helper thread, its CPU time counted (read after the result)."""
        def timed() -> _T:
            started = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.helper_cpu_s += time.thread_time() - started

        if self._helper is None:
            self._helper = ThreadPoolExecutor(1, thread_name_prefix="kora-vectors-helper")
        return self._helper.submit(timed)

    def close(self) -> None:
        """End the helper thread, if any (the embedder stays usable; a later split starts one again)."""
        helper, self._helper = self._helper, None
        if helper is not None:
            helper.shutdown(wait=True)

    def _lookup(self, h: U64) -> I64:
        """Word index of each hash, -1 where unknown: one gather for most words, a few more rounds for the rest."""
        mask = len(self._keys) - 1
        at = (h >> self._shift).astype(np.intp)
        key = self._keys[at]
        hit = key == h
        out: I64 = np.where(hit, self._vals[at], -1).astype(np.int64)
        idx = np.flatnonzero(~hit & (key != 0))
        at, want = (at[idx] + 1) & mask, h[idx]
        while len(idx):
            key = self._keys[at]
            hit = key == want
            out[idx[hit]] = self._vals[at[hit]]
            more = ~hit & (key != 0)
            idx, at, want = idx[more], (at[more] + 1) & mask, want[more]
        return out

    def _word_tokens(self, buf: bytes, split: bool = False) -> tuple[npt.NDArray[np.int32], I64, I64]:
        """Token ids of the words of ``buf`` in order, each word's token count, and the word starts."""
        starts, ends = word_spans(buf)
        h = self._hash(buf, starts, ends)
        np.maximum(h, np.uint64(1), out=h)  # 0 marks an empty slot of the table
        wid = self._lookup(h)
        miss = np.flatnonzero(wid < 0)  # once the cache is warm, few
        if len(miss):
            new, at, which = np.unique(h[miss], return_index=True, return_inverse=True)
            if self._words + len(new) > MAX_CACHED_WORDS:  # full: start over with this batch's words
                self._reset_cache()
                miss = np.arange(len(h))
                new, at, which = np.unique(h, return_index=True, return_inverse=True)
            first = self._words
            self._learn(buf, starts[miss[at]], ends[miss[at]], new, split)
            wid[miss] = first + which  # _learn numbers the new words in order from first
        counts = self._count[wid].astype(np.int64)
        tok_ends = np.cumsum(counts)
        total = int(tok_ends[-1]) if len(tok_ends) else 0
        offs = np.repeat(self._start[wid] - (tok_ends - counts), counts) + np.arange(total)
        return self._ids[offs], counts, starts

    def embed(self, texts: Sequence[bytes], split: bool = False) -> F32:
        """Unit vectors of ``texts`` (UTF-8; a text without words gets the zero vector).

        ``split``: new words are tokenised on two threads (see :meth:`_encode`), and the texts
        pooled on two (each half its own rows of the result, summed exactly as on one thread;
        ``take`` and BLAS release the GIL): the same vectors, bit for bit.
        """
        out = np.zeros((len(texts), self.dims), np.float32)
        if not texts:
            return out
        buf = b"\n".join(texts)  # the separator is no word byte: words never run across texts
        lengths = np.fromiter(map(len, texts), np.int64, len(texts))
        text_end = np.cumsum(lengths + 1) - 1  # offset of each text's end in buf
        with self._lock:
            tokens, counts, starts = self._word_tokens(buf, split)
        if not len(tokens):
            return out
        words_before = np.searchsorted(starts, text_end)  # words that start before each text's end
        tok_cum = np.concatenate(([0], np.cumsum(counts)))
        tok_end = tok_cum[words_before]
        tok_start = np.concatenate(([0], tok_end[:-1]))
        used = np.zeros(len(self.weights), bool)
        used[tokens] = True
        rows = np.flatnonzero(used)
        remap = np.zeros(len(self.weights), np.int32)
        remap[rows] = np.arange(len(rows), dtype=np.int32)
        table = self._rows(rows)  # only this batch's vocabulary, in float32
        local = remap[tokens]
        del used, remap, tokens
        half = len(texts) // 2 if split and len(texts) >= SPLIT_POOL_TEXTS else 0
        first = self._submit(pool_sums, table, local, tok_start[:half], tok_end[:half], out[:half]) if half else None
        try:
            pool_sums(table, local, tok_start[half:], tok_end[half:], out[half:])
        finally:
            if first is not None:
                first.result()
        return normalize(out)

    def embed_query(self, text: str) -> F32:
        """One query's unit vector; tokenises its words directly (no shared cache, no lock)."""
        words = [w.decode("utf-8", "replace") for w in WORD.findall(text.encode("utf-8", "replace"))]
        vec = np.zeros(self.dims, np.float32)
        if words:
            encs = self.tokenizer.encode_batch_fast(words, add_special_tokens=False)
            ids = np.fromiter((i for e in encs for i in e.ids), np.int64)
            if len(ids):
                vec = self._rows(ids).sum(axis=0)
        one: F32 = normalize(vec[None, :])[0]
        return one

    def _rows(self, ids: npt.NDArray[np.int64]) -> F32:
        """The float32 rows of the token ids ``ids``."""
        if self.scales is None:
            plain: F32 = self.weights[ids].astype(np.float32)
            return plain
        rows: F32 = np.empty((len(ids), self.dims), np.float32)
        np.multiply(self.weights[ids], self.scales[ids, None], out=rows)  # int8 x scale, one pass
        return rows

    def quantize(self, vectors: F32) -> npt.NDArray[np.int8]:
        """int8 vectors for storage: each scaled so its largest component is ±127 (cosine ignores scale)."""
        peak = np.abs(vectors).max(axis=-1, keepdims=True)
        np.maximum(peak, 1e-12, out=peak)
        out: npt.NDArray[np.int8] = np.rint(vectors * (127.0 / peak)).astype(np.int8)
        return out

    def codes(self, vectors: F32) -> npt.NDArray[np.uint8]:
        """Packed sign bits: ``dims / 8`` bytes each (centring on the vocabulary mean kept fewer true neighbours)."""
        return np.packbits(vectors > 0, axis=-1)


_Arr = TypeVar("_Arr", npt.NDArray[np.int64], npt.NDArray[np.int32])
_T = TypeVar("_T")


def _room(arr: _Arr, used: int, more: int) -> _Arr:
    """``arr`` with room for ``more`` items after its first ``used`` (capacity doubles: appends stay cheap)."""
    if used + more <= len(arr):
        return arr
    out = np.empty(max(2 * len(arr), used + more), arr.dtype)
    out[:used] = arr[:used]
    return out
