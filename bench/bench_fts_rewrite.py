"""Rewriting rows of an FTS5 table: a table keeping its text against contentless tables.

Run: .venv/bin/python bench/bench_fts_rewrite.py [--rows 10000] [--batch 100] [--rounds 3]

Each table gets ``--rows`` rows of about 1 KB (Zipf-free random words, 500 per transaction), then
every row is rewritten ``--rounds`` times over: per transaction, ``--batch`` rows deleted by rowid
and inserted again under new rowids with other text (what a burst of rewritten files does to an
agency's table). Printed per table: seconds for the rewrites and the file size after them.

Same-run baseline: the plain FTS5 table keeping its text (agencies' tables before schema 4).
The others: contentless with ``contentless_delete=1`` and FTS5's default ``deletemerge`` (10),
and with ``deletemerge`` 0 and 50 (koradaemon's tables use :data:`fts.DELETE_MERGE_PERCENT`).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import apsw

from koradaemon.index import fts

TABLES = [
    ("plain, text kept (baseline)", "", None),
    ("contentless, deletemerge 10 (FTS5 default)", ", content = '', contentless_delete = 1", None),
    ("contentless, deletemerge 0", ", content = '', contentless_delete = 1", 0),
    ("contentless, deletemerge 50", ", content = '', contentless_delete = 1", 50),
]


def one(path: Path, opts: str, deletemerge: int | None, texts: list[str], batch: int, rounds: int) -> float:
    conn = apsw.Connection(str(path))
    conn.pragma("journal_mode", "wal")
    conn.pragma("synchronous", "normal")
    conn.execute(f"CREATE VIRTUAL TABLE t USING fts5(body, extra, tokenize = '{fts.TOKENIZER}'{opts})")
    if deletemerge is not None:
        conn.execute("INSERT INTO t(t, rank) VALUES ('deletemerge', ?)", (deletemerge,))
    n = len(texts)
    ids = list(range(1, n + 1))
    for k in range(0, n, 500):
        with conn:
            conn.executemany("INSERT INTO t(rowid, body, extra) VALUES (?, ?, '')",
                             [(ids[i], texts[i]) for i in range(k, min(k + 500, n))])
    nxt = n + 1
    t0 = time.perf_counter()
    for start in range(0, rounds * n, batch):
        rows = [i % n for i in range(start, start + batch)]
        with conn:
            conn.executemany("DELETE FROM t WHERE rowid = ?", [(ids[i],) for i in rows])
            new = []
            for i in rows:
                ids[i], nxt = nxt, nxt + 1
                new.append((ids[i], texts[(i * 7 + start) % n]))
            conn.executemany("INSERT INTO t(rowid, body, extra) VALUES (?, ?, '')", new)
    dt = time.perf_counter() - t0
    conn.close()
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rnd = random.Random(1)
    words = [f"w{i}" for i in range(5000)]
    texts = [" ".join(rnd.choices(words, k=170))[:1000] for _ in range(args.rows)]
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="kora-fts-rw-") as tmp:
        base = None
        for i, (label, opts, dm) in enumerate(TABLES):
            path = Path(tmp) / f"t{i}.db"
            dt = one(path, opts, dm, texts, args.batch, args.rounds)
            size = sum(p.stat().st_size for p in Path(tmp).glob(f"t{i}.db*"))
            base = base or dt
            print(f"{label:45s} {args.rounds * args.rows} rewrites in {dt:6.2f} s ({dt / base:.2f} of the baseline),"
                  f" {size / 1e6:6.1f} MB")


if __name__ == "__main__":
    main()
