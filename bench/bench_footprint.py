"""The daemon's footprint at scale: peak RSS over the start-up crawl, and the database's size.

Run: .venv/bin/python bench/bench_footprint.py [--files 100000] [--size 1000] [--corpus generated|stdlib]

Starts a real daemon on ``--files`` files, samples its RSS every 50 ms from launch until the
crawl is done and the writer has checkpointed, stops it, starts it again on the same data (a
restart: the reconcile crawl holds the root's index while it compares), then measures the
database: bytes per table and index (``dbstat``), free pages, and the ratio to the text indexed.

Same-run baselines: RSS of the same daemon started on a 10-file root (what does not grow with
the files), and the size of a plain FTS5 table (``unicode61``, text stored, positions kept)
holding the same chunks with nothing else (what any full-text index of this text costs).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import apsw
from corpus import fresh, generated_corpus, make_corpus
from daemon_proc import LiveDaemon, Sampler

from koradaemon.index.chunking import iter_spans

CHILD_PEAK = [0.0]  # peak RSS (MB) of the daemon's prep worker process over every start
PREP = [True]  # --no-prep-process: index.prep_process false


def peak_rss(base: Path) -> tuple[float, float, float]:
    """Start the daemon on ``base/corpus``: its peak RSS (MB), the start-up time (s) and SQLite's
    own peak memory (MB, page caches and FTS5's pending terms included). The prep worker process's
    peak goes to ``CHILD_PEAK``."""
    d = LiveDaemon(base, prep_process=PREP[0])
    sampler = Sampler(d)
    try:
        with sampler:
            dt = d.start()
            time.sleep(2.0)  # the writer checkpoints (and gives back free pages) after a second without work
            sqlite_peak = float(((d.status() or {}).get("memory") or {}).get("sqlite_peak_mb", 0.0))
    finally:
        d.stop()
    CHILD_PEAK[0] = max(CHILD_PEAK[0], sampler.child_peak)
    return sampler.peak, dt, sqlite_peak


def db_breakdown(db: Path) -> tuple[int, list[tuple[str, int]], int]:
    conn = apsw.Connection(str(db))
    try:
        conn.pragma("wal_checkpoint", "TRUNCATE")
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
        free = int(conn.pragma("freelist_count")) * int(conn.pragma("page_size"))
    finally:
        conn.close()
    return db.stat().st_size, [(str(n), int(s)) for n, s in rows], free


def plain_fts(corpus: Path, db: Path) -> int:
    conn = apsw.Connection(str(db))
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(body, tokenize = 'unicode61 remove_diacritics 2')")
    with conn:
        for p in sorted(corpus.rglob("*")):
            if p.is_file():
                data = p.read_bytes()
                spans = iter_spans(data, len(data))
                conn.executemany("INSERT INTO t(body) VALUES (?)",
                                 ((data[s.offset : s.end].decode("utf-8", "replace"),) for s in spans))
    conn.execute("VACUUM")
    conn.close()
    return db.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--corpus", choices=("generated", "stdlib"), default="generated")
    ap.add_argument("--no-db", action="store_true", help="skip the database breakdown and its baseline")
    ap.add_argument("--no-prep-process", action="store_true", help="index.prep_process false (threads only)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kora-footprint-") as tmp:
        small, big = Path(tmp) / "small", Path(tmp) / "big"
        generated_corpus(fresh(small / "corpus"), 10, args.size)
        nfiles, nbytes = make_corpus(args.corpus, fresh(big / "corpus"), args.files, args.size)
        PREP[0] = not args.no_prep_process
        base_rss, _, base_sqlite = peak_rss(small)
        rss, dt, sqlite_peak = peak_rss(big)
        print(f"corpus: {nfiles} files, {nbytes / 1e6:.1f} MB; start-up crawl {dt:.1f} s ({nfiles / dt:.0f} files/s)")
        again, dt2, _ = peak_rss(big)
        print(f"daemon peak RSS: {rss:.1f} MB; same daemon on 10 files: {base_rss:.1f} MB;"
              f" growth {rss - base_rss:.1f} MB ({(rss - base_rss) * 1e6 / nfiles:.0f} bytes per file);"
              f" SQLite's own peak {sqlite_peak:.1f} MB (10 files: {base_sqlite:.1f} MB)")
        print(f"restart over the indexed tree (every file compared with the index): peak RSS {again:.1f} MB,"
              f" ready in {dt2:.1f} s")
        print(f"prep worker process peak RSS (separate from the daemon's): {CHILD_PEAK[0]:.1f} MB")
        if args.no_db:
            return
        size, tables, free = db_breakdown(big / "kora_kernel.db")
        plain = plain_fts(big / "corpus", Path(tmp) / "plain.db")
        print(f"database: {size / 1e6:.2f} MB, {size / nbytes:.2f}x the text indexed (free pages {free / 1e6:.2f} MB);"
              f" plain FTS5 table of the same chunks: {plain / 1e6:.2f} MB, {plain / nbytes:.2f}x")
        for name, n in tables:
            if n >= size // 200:
                print(f"  {name:32s} {n / 1e6:8.2f} MB  {n / nbytes:5.2f}x")


if __name__ == "__main__":
    main()
