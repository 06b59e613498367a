"""One agency's embedding step: find chunks without vectors, read them, embed their passages, store.

Runs on the vector thread only (see :mod:`.service`). It reads chunk rows from the
kernel database and the bytes from the file by byte range (checked against the
chunk's sha256: a file that changed since indexing is skipped until the writer has
indexed it again). A restart resumes where it stopped: what is left is exactly the
chunks without a ``vd`` row of the same sha256.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from ..errors import KoraError
from ..index.retrieval import ChunkRef, StaleChunk, open_chunk
from .codes import CodeIndex
from .embedder import Embedder
from .passages import split_passages
from .store import PassageRow, PendingChunk, VectorTables, data_version

log = structlog.get_logger(__name__)


@dataclass
class AgencyVectors:
    tables: VectorTables
    index: CodeIndex
    roots: tuple[str, ...]
    cursor: int = 0
    version: int | None = None
    lag_chunks: int = 0
    lag_bytes: int = 0
    queue: list[PendingChunk] = field(default_factory=list)  # pending chunks read ahead, until the next commit
    counters: dict[str, float] = field(default_factory=lambda: {
        "chunks": 0, "passages": 0, "bytes": 0, "busy_s": 0.0, "cpu_s": 0.0, "stale": 0, "errors": 0, "swept": 0})

    def status(self) -> dict[str, object]:
        c = self.counters
        rate = c["bytes"] / 1e6 / c["busy_s"] if c["busy_s"] else 0.0
        per_cpu = c["bytes"] / 1e6 / c["cpu_s"] if c["cpu_s"] else 0.0
        return {"passages": len(self.index), "lag_chunks": self.lag_chunks, "lag_bytes": self.lag_bytes,
                "embedded_chunks": int(c["chunks"]), "embedded_bytes": int(c["bytes"]),
                "mb_per_s": round(rate, 2), "mb_per_cpu_s": round(per_cpu, 2),
                "stale_skipped": int(c["stale"]), "errors": int(c["errors"]),
                "swept_passages": int(c["swept"])}


class Step:
    """The embedding step for all agencies, on one connection."""

    def __init__(self, embedder: Embedder, data_root: Path, passage_bytes: int, batch_passages: int,
                 split: Callable[[], bool] | None = None) -> None:
        self.embedder = embedder
        # asked before each part of a batch: may it use a second thread (Embedder.embed)?
        self.split = split
        self.data_root = data_root
        self.passage_bytes = passage_bytes
        self.batch_passages = batch_passages
        # A batch is about batch_passages full passages of text, however many chunks that takes:
        # small files make small chunks, and small batches pay the per-batch costs many times over.
        self.batch_bytes = batch_passages * passage_bytes

    def _take(self, chunks: list[PendingChunk]) -> list[PendingChunk]:
        """The leading chunks up to about one batch of text (at least one)."""
        total = 0
        for i, chunk in enumerate(chunks):
            total += chunk.length
            if total >= self.batch_bytes:
                return chunks[: i + 1]
        return chunks[:]  # a copy: the caller removes these from its queue

    def run(self, av: AgencyVectors) -> bool:
        """One batch for one agency; True if it did work (call again soon)."""
        version = data_version(av.tables.conn)
        if version != av.version:  # the writer committed: sweep what went away, rescan from the start
            removed = av.tables.sweep()
            av.index.remove(removed)
            av.counters["swept"] += len(removed)
            av.version, av.cursor, av.queue = version, 0, []
            av.lag_chunks, av.lag_bytes = av.tables.lag()
        if sum(c.length for c in av.queue) < self.batch_bytes:  # one query for many batches of a few chunks
            av.queue.extend(av.tables.pending(av.queue[-1].chunk_id if av.queue else av.cursor, self.batch_passages))
        chunks = self._take(av.queue)
        del av.queue[: len(chunks)]
        if not chunks:
            av.lag_chunks = av.lag_bytes = 0
            return False
        started, cpu = time.monotonic(), time.thread_time() + self.embedder.helper_cpu_s
        done: list[tuple[PendingChunk, int]] = []  # each chunk read and its passage count
        texts: list[bytes] = []
        spans: list[tuple[int, int, int, str]] = []  # chunk id, offset, length, sha256 of each passage
        for chunk in chunks:
            try:
                ref = ChunkRef(chunk.root, chunk.path, chunk.offset, chunk.length, chunk.sha256)
                with open_chunk(self.data_root, av.roots, ref) as view:
                    data = bytes(view)
            except StaleChunk:
                av.counters["stale"] += 1  # the writer will index the new content; retried then
                continue
            except (KoraError, OSError) as exc:
                av.counters["errors"] += 1
                log.warning("vector_chunk_unreadable", agency_id=av.tables.agency_id, path=chunk.path, error=str(exc))
                continue
            passages = split_passages(data, chunk.offset, self.passage_bytes)
            done.append((chunk, len(passages)))
            spans.extend((chunk.chunk_id, p.offset, p.length, p.sha256) for p in passages)
            texts.extend(p.data for p in passages)
        rows: list[PassageRow] = []
        parts = -(-len(texts) // (self.batch_passages + self.batch_passages // 4))  # even parts, none tiny
        size = max(1, -(-len(texts) // max(1, parts)))
        for start in range(0, len(texts), size):
            vecs = self.embedder.embed(texts[start : start + size], self.split is not None and self.split())
            codes, vectors = self.embedder.codes(vecs).tobytes(), self.embedder.quantize(vecs).tobytes()
            cb, vb = len(codes) // len(vecs), len(vectors) // len(vecs)  # one bytes object, sliced per row
            rows.extend((*span, codes[i * cb : i * cb + cb], vectors[i * vb : i * vb + vb])
                        for i, span in enumerate(spans[start : start + size]))
        added = av.tables.put(done, rows)
        av.index.add(added)
        nbytes = sum(c.length for c, _ in done)
        av.counters["chunks"] += len(done)
        av.counters["passages"] += len(added)
        av.counters["bytes"] += nbytes
        av.counters["busy_s"] += time.monotonic() - started
        # this thread's CPU and its helper's: a figure the machine's load does not skew
        av.counters["cpu_s"] += time.thread_time() + self.embedder.helper_cpu_s - cpu
        av.lag_chunks = max(0, av.lag_chunks - len(chunks))
        av.lag_bytes = max(0, av.lag_bytes - sum(c.length for c in chunks))
        av.cursor = chunks[-1].chunk_id
        return True
