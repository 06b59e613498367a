"""Bulk indexing throughput and memory, beside a plain one-transaction FTS5 insert of the same chunks.

Run: .venv/bin/python bench/bench_index.py [--corpus stdlib|generated] [--files N] [--size B] [--rounds R]
Baseline and pipeline run alternately R times on fresh databases; prints MB/s and files/s of each
round with its ratio, the CPU seconds each used (all threads of this process and the prep worker
process: on a loaded machine the CPU ratio says what the wall ratio cannot), the median ratios, and
peak RSS of this process and of the prep worker. --no-prep-process: files prepared in threads only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import apsw
import psutil
from corpus import fresh, make_corpus

from koradaemon.index import fts
from koradaemon.index.chunking import iter_spans
from koradaemon.index.db import open_db
from koradaemon.index.pipeline import Indexer
from koradaemon.index.prepare import ChunkParams
from koradaemon.index.writer import SWITCH_INTERVAL, Writer

KIND = SimpleNamespace(name="INDEX")


class ListQueue:
    def __init__(self, items: list[object]) -> None:
        self.q: queue.Queue[object] = queue.Queue()
        for it in items:
            self.q.put(it)
        self.pending = len(items)
        self.done = threading.Event()

    def get(self, timeout: float | None = None) -> object | None:
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            return None

    def depth(self) -> int:
        return self.q.qsize()

    def task_done(self) -> None:
        self.pending -= 1
        if self.pending <= 0:
            self.done.set()


def rss_sampler(stop: threading.Event, peak: list[int]) -> None:
    """peak[0]: this process; peak[1]: its largest child (the prep worker process)."""
    proc = psutil.Process()
    while not stop.wait(0.05):
        peak[0] = max(peak[0], proc.memory_info().rss)
        for child in proc.children():
            with contextlib.suppress(psutil.Error):
                peak[1] = max(peak[1], child.memory_info().rss)


def cpu_now() -> tuple[float, float]:
    """CPU seconds of this process, and of its children that ended (the prep worker is waited for)."""
    t = os.times()
    return t.user + t.system, t.children_user + t.children_system


def run_daemon_path(corpus: Path, files: list[str], db: Path, workers: int, prep: bool) -> float:
    open_db(db).close()
    writer = Writer(db, batch_files=2000)
    # As the daemon's start-up crawl hands them over on an empty index (watch/reconcile.py): with the
    # size the crawl saw (its stat is the crawl's, before the clock here as in the baseline).
    changes = [SimpleNamespace(kind=KIND, agency_id="bench", root="c", path=p, bulk=True, unindexed=True,
                               size=(corpus / p).stat().st_size) for p in files]
    work = ListQueue(changes)
    indexer = Indexer(db_path=db, work=work, writer=writer, root_paths={("bench", "c"): corpus},
                      params=ChunkParams(), workers=workers, prep_process=prep)
    t0 = time.perf_counter()
    writer.start()
    indexer.start()
    work.done.wait()
    writer.flush()
    dt = time.perf_counter() - t0
    indexer.stop()
    writer.stop()
    PREPARED.update({k: v for k, v in indexer.counters.items() if k.startswith("prep")})
    return dt


PREPARED: dict[str, int] = {}


def run_baseline(corpus: Path, files: list[str], db: Path) -> float:
    """Plain ceiling: read, chunk and insert every chunk into an agency's FTS5 table in ONE transaction,
    one thread, no bookkeeping (no metadata rows, no hashes, no derived tokens, no audit records)."""
    open_db(db).close()
    conn = apsw.Connection(str(db))
    conn.pragma("journal_mode", "wal")
    conn.pragma("synchronous", "normal")
    with conn:  # a plain FTS5 table keeping its text (what an agency's table was before it became
        # contentless: the baseline), created before the clock starts
        conn.execute("CREATE VIRTUAL TABLE plain USING fts5(body, extra, line UNINDEXED,"
                     f" tokenize = '{fts.TOKENIZER}')")
    sql = "INSERT INTO plain(body, line, extra) VALUES (?, 1, '')"
    t0 = time.perf_counter()
    with conn:
        for rel in files:
            data = (corpus / rel).read_bytes()
            for s in iter_spans(data, len(data)):
                conn.execute(sql, (data[s.offset:s.end].decode(),))
    dt = time.perf_counter() - t0
    conn.close()
    return dt


def main() -> None:
    sys.setswitchinterval(float(os.environ.get("KORA_SWITCH_INTERVAL", SWITCH_INTERVAL)))
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", choices=("stdlib", "generated"), default="stdlib")
    ap.add_argument("--files", type=int, default=20_000, help="generated corpus: number of files")
    ap.add_argument("--size", type=int, default=2000, help="generated corpus: bytes per file")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="baseline/pipeline pairs, alternating")
    ap.add_argument("--no-prep-process", action="store_true", help="prepare files in threads only (as before)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kora-bench-") as tmp:
        base = Path(tmp)
        corpus = fresh(base / "corpus")
        nfiles, nbytes = make_corpus(args.corpus, corpus, args.files, args.size)
        files = sorted(str(p.relative_to(corpus)) for p in corpus.rglob("*") if p.is_file())
        mb = nbytes / 1e6
        print(f"corpus: {args.corpus}, {nfiles} files, {mb:.1f} MB")
        peak = [psutil.Process().memory_info().rss, 0]
        stop = threading.Event()
        sampler = threading.Thread(target=rss_sampler, args=(stop, peak), daemon=True)
        sampler.start()
        ratios, cpu_ratios, own_ratios, best_base, best = [], [], [], 0.0, 0.0
        for r in range(args.rounds):  # baseline and pipeline alternate: a load swing hits both alike
            cpu0 = cpu_now()
            base_dt = run_baseline(corpus, files, base / f"baseline{r}.db")
            cpu1 = cpu_now()
            dt = run_daemon_path(corpus, files, base / f"kora{r}.db", args.workers, not args.no_prep_process)
            cpu2 = cpu_now()
            base_cpu = sum(cpu1) - sum(cpu0)
            own, worker = cpu2[0] - cpu1[0], cpu2[1] - cpu1[1]
            ratios.append(base_dt / dt)
            cpu_ratios.append(base_cpu / (own + worker))
            own_ratios.append(base_cpu / own)
            best_base, best = max(best_base, nfiles / base_dt), max(best, nfiles / dt)
            print(f"round {r + 1}: baseline (1 txn, plain FTS5 insert) {mb / base_dt:6.1f} MB/s {nfiles / base_dt:8.0f}"
                  f" files/s | koradaemon bulk index {mb / dt:6.1f} MB/s {nfiles / dt:8.0f} files/s"
                  f" | ratio {base_dt / dt:.2f} | cpu {base_cpu:.2f} s vs {own:.2f} s + worker {worker:.2f} s")
            for old in base.glob(f"*{r}.db*"):
                old.unlink()
        stop.set()
        sampler.join()
        print(f"median ratio {statistics.median(ratios):.2f} of baseline over {args.rounds} rounds"
              f" (cpu: {statistics.median(cpu_ratios):.2f} of all, {statistics.median(own_ratios):.2f} of this"
              f" process's alone); best rounds:"
              f" baseline {best_base:.0f} files/s, koradaemon {best:.0f} files/s")
        print(f"peak RSS of this process         : {peak[0] / 1e6:6.1f} MB  (cpus={os.cpu_count()})")
        print(f"peak RSS of the prep worker      : {peak[1] / 1e6:6.1f} MB  (last round: {PREPARED})")

if __name__ == "__main__":
    main()
