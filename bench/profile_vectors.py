"""CPU time per stage of the embedding step and of vector search, in-process (no profiler's per-call cost).

Run: .venv/bin/python bench/profile_vectors.py --root DIR [--passages 100000] [--mb 0] [--queries 600] [--files]

Builds DIR once (kernel rows for ``--passages`` passages of standard-library text, as
``bench_vectors.py`` does for its latency part; with ``--files``, the standard library's files as
they are, one document each, as the daemon's catch-up in ``bench_vectors.py`` sees them: many
small chunks), then embeds it with the daemon's step
(``--mb``: stop after that many MB; 0 = all; the vectors database starts empty each run) and
asks ``--queries`` queries through ``VectorService.search``. Each stage's function is wrapped
with a timer of this thread's CPU time; the totals are printed per stage.
"""

from __future__ import annotations

import argparse
import collections
import functools
import hashlib
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_vectors import knn_corpus
from corpus import fresh, stdlib_corpus

from koradaemon import gcsettings
from koradaemon.config import parse_config
from koradaemon.vectors import codes, embedder, service, store, worker
from koradaemon.vectors.heap import batch_mode, rest_mode

CPU: dict[str, float] = collections.defaultdict(float)
CALLS: dict[str, int] = collections.defaultdict(int)


def timed(owner: Any, name: str, static: bool = False) -> None:
    fn: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        c = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            CPU[name] += time.thread_time() - c
            CALLS[name] += 1

    setattr(owner, name, staticmethod(wrapper) if static else wrapper)


def report(title: str, per: int = 0) -> None:
    print(title)
    for name, s in sorted(CPU.items(), key=lambda kv: -kv[1]):
        each = f"  {1000 * s / per:7.3f} ms each query" if per else ""
        print(f"  {name:18s} {s:8.3f} s in {CALLS[name]:6d} calls{each}")
    CPU.clear()
    CALLS.clear()


def files_corpus(root: Path, passages: int) -> None:
    """``root`` with the standard library's files of about ``passages`` passages as they are, and their
    kernel rows (one document each, chunks of 51,200 bytes written directly)."""
    from koradaemon.index.db import open_db

    fresh(root)
    stdlib_corpus(fresh(root / "notes"), passages * 1536)
    (root / "texts").symlink_to("notes")  # the queries' words (see below)
    kernel = open_db(root / "kora_kernel.db")
    with kernel:
        for i, path in enumerate(sorted((root / "notes").rglob("*.py")), 1):
            body, name = path.read_bytes(), str(path.relative_to(root / "notes"))
            kernel.execute("INSERT INTO documents(id, agency_id, root, path, size, mtime_ns, sha256, indexed_at)"
                           " VALUES (?, 'bench', 'notes', ?, ?, 0, '', '')", (i, name, len(body)))
            for seq, off in enumerate(range(0, len(body), 51_200)):
                piece = body[off : off + 51_200]
                kernel.execute("INSERT INTO chunks(agency_id, document_id, seq, byte_offset, byte_length, sha256)"
                               " VALUES ('bench', ?, ?, ?, ?, ?)", (i, seq, off, len(piece),
                                                                   hashlib.sha256(piece).hexdigest()))
    kernel.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--passages", type=int, default=100_000)
    ap.add_argument("--mb", type=float, default=0)
    ap.add_argument("--queries", type=int, default=600)
    ap.add_argument("--files", action="store_true", help="the stdlib's files as they are (small chunks)")
    ap.add_argument("--split", action="store_true", help="new words tokenised on two threads (the daemon, idle)")
    args = ap.parse_args()
    root: Path = args.root
    if not (root / "kora_kernel.db").exists():
        (files_corpus if args.files else knn_corpus)(root, args.passages)
    for f in root.glob("kora_vectors.db*"):
        f.unlink()
    print(f"load average: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    cfg = parse_config("agencies: [{agency_id: bench, roots: [notes]}]\nvault: {enabled: false}\n"
                       "vectors: {enabled: true, dims: 256}", data_root=root)
    for owner, names in ((embedder.Embedder, ("embed", "_word_tokens", "_learn", "_tokenize_words", "_lookup", "_rows",
                                             "quantize", "codes")),
                         (embedder, ("pool_sums", "word_spans", "word_sequences")),
                         (worker, ("split_passages", "open_chunk")),
                         (store.VectorTables, ("put", "pending", "sweep", "lag"))):
        for name in names:
            timed(owner, name)
    timed(embedder.Embedder, "_hash", static=True)
    svc = service.VectorService(cfg, root / "kora_kernel.db", lambda a: False)
    conn = svc._load()
    svc.state = "ready"
    assert svc.embedder is not None
    av = svc.agencies["bench"]
    step = worker.Step(svc.embedder, root, 1536, 256, split=(lambda: True) if args.split else None)
    c0, w0, r0 = time.thread_time(), time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    batch_mode()
    while step.run(av) and not (args.mb and av.counters["bytes"] >= args.mb * 1e6):
        pass
    rest_mode()
    cpu, wall, r1 = time.thread_time() - c0, time.perf_counter() - w0, resource.getrusage(resource.RUSAGE_SELF)
    proc = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime  # with the tokenizer's helper thread, if any
    mb = av.counters["bytes"] / 1e6
    report(f"embedding step: {mb:.1f} MB in {cpu:.2f} CPU-s of this thread, {mb / cpu:.2f} MB per CPU-s;"
           f" {mb / wall:.2f} MB/s wall, {mb / proc:.2f} MB per CPU-s of the process; per stage:")
    if args.mb:  # a partial pass: the rest of the text has no vectors, searching it says little
        conn.close()
        return 0
    timed(embedder.Embedder, "embed_query")
    timed(codes.CodeIndex, "candidates")
    timed(store.VectorTables, "rank")
    timed(service, "read_chunk_text")
    text = b"".join(p.read_bytes() for p in sorted((root / "texts").rglob("*.py")))
    words = text.decode("utf-8", "replace").split()
    gcsettings.settle()
    cpu_q: list[float] = []
    sys_s = 0.0
    for q in range(args.queries):
        query = " ".join(words[(q * 7919) % (len(words) - 5) :][:4])
        r0, c = resource.getrusage(resource.RUSAGE_THREAD), time.thread_time()
        svc.search("bench", query, 10)
        cpu_q.append(time.thread_time() - c)
        sys_s += resource.getrusage(resource.RUSAGE_THREAD).ru_stime - r0.ru_stime
    cpu_q.sort()
    report(f"vector top-10 at {len(av.index)} passages, {args.queries} queries: CPU p50"
           f" {1000 * cpu_q[len(cpu_q) // 2]:.2f} ms, p99 {1000 * cpu_q[int(len(cpu_q) * 0.99)]:.2f} ms,"
           f" system time {1000 * sys_s / args.queries:.2f} ms a query; per stage:", args.queries)
    print(f"load average: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
