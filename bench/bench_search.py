"""Search through a live daemon per query class, beside the raw FTS5 query in the same run.

Run: .venv/bin/python bench/bench_search.py [--chunks 100000] [--piece 1000] [--per-class 200] [--root DIR]

Another checkout's code (an export of main in TREE): ``cd TREE && PYTHONPATH=TREE
/path/to/.venv/bin/python /path/to/bench/bench_search.py ...``. The daemon is started with
``python -m koradaemon``, which puts the working directory first on ``sys.path``: run from this
tree, the daemon would import this tree's code whatever PYTHONPATH says.

A corpus of ``--chunks`` files (one chunk each) is cut from the Python standard library's
sources; the daemon indexes it; query words are picked from the index by document frequency
(bench/corpus.py ``query_classes``). Each query asks for the top 10 with snippets through the
control socket. The baseline, run in-process on the same database file in the same run, is
FTS5's own ``ORDER BY rank LIMIT 10`` of the same expression, without snippets; a third
column runs the daemon's own search code in the bench process (no socket, no daemon threads).
"daemon CPU/q" is the daemon process's CPU time per search (all its threads, read before and
after each call from the scheduler's per-thread run time, so the bench's own baseline queries in
between add no idle time of the daemon): unlike the latencies, it
hardly changes with the machine's load. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import apsw
import psutil
from corpus import query_classes, stdlib_pieces
from daemon_proc import LiveDaemon

from koradaemon.index.query import parse
from koradaemon.index.retrieval import FileTexts
from koradaemon.index.store import AgencyStore


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))] * 1000


def _cpu(proc: psutil.Process | None) -> dict[int, float]:
    """CPU seconds each thread of the daemon has used. Linux: the scheduler's run time (ns;
    psutil's process figures count 10 ms ticks); elsewhere one figure for the process."""
    if proc is None:
        return {}
    tasks = Path(f"/proc/{proc.pid}/task")
    if not tasks.is_dir():
        t = proc.cpu_times()
        return {0: float(t.user + t.system)}
    out = {}
    for task in tasks.iterdir():
        try:
            out[int(task.name)] = int((task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended in between
    return out


def _used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU time between two readings: threads that ended in between are left out (their time
    leaves the sum), threads that started count whole."""
    return sum(v - before.get(tid, 0.0) for tid, v in after.items())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--piece", type=int, default=1000)
    ap.add_argument("--per-class", type=int, default=200)
    ap.add_argument("--settle", type=float, default=40.0,
                    help="seconds to wait after the crawl (the writer merges FTS segments when idle)")
    ap.add_argument("--root", type=Path, help="keep the data root here and reuse its corpus and index next time")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kora-search-") as tmp:
        root = args.root or Path(tmp)
        made = (root / "corpus" / "p0000").is_dir()
        d = LiveDaemon(root, 20)
        if made:
            nfiles = sum(1 for p in (root / "corpus").rglob("*.txt"))
            nbytes = sum(p.stat().st_size for p in (root / "corpus").rglob("*.txt"))
        else:
            nfiles, nbytes = stdlib_pieces(root / "corpus", args.chunks, args.piece)
        try:
            dt = d.start()
            print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
            print(f"indexed {nfiles} files ({nbytes / 1e6:.1f} MB, one chunk each) in {dt:.1f} s")
            time.sleep(args.settle)
            ro = apsw.Connection(str(d.root / "kora_kernel.db"), flags=apsw.SQLITE_OPEN_READONLY)
            store = AgencyStore(ro, "bench", FileTexts(d.root, ("corpus",)))
            classes = query_classes(ro, "fts_bench", random.Random(5), args.per_class, d.root)
            token = d.token()
            daemon = psutil.Process(d.proc.pid) if d.proc else None
            print(f"{'class':14s} {'socket p50':>10s} {'p99':>8s} {'daemon CPU/q':>12s} | {'raw FTS5 p50':>12s}"
                  f" {'p99':>8s} | {'in-process p50':>14s} {'p99':>8s} | example")
            with d.client() as c:
                pings = []
                for _ in range(args.per_class):
                    t0 = time.perf_counter()
                    c.call("ping", "bench", token)
                    pings.append(time.perf_counter() - t0)
            print(f"{'(ping)':14s} {pct(pings, .5):8.2f}ms {pct(pings, .99):6.2f}ms {'':12s} |"
                  "  the socket round trip alone")
            for kind, qs in classes.items():
                # A connection per class: the daemon lowers a connection thread's priority for good
                # once one of its searches has used search.SLOW_S of CPU time, which would carry
                # one class's slow query over into the classes after it.
                with d.client() as c:
                    sock, raw, local = [], [], []
                    cpu = 0.0
                    for q in qs:
                        cpu0 = _cpu(daemon)
                        t0 = time.perf_counter()
                        c.call("search", "bench", token, query=q, limit=10)
                        sock.append(time.perf_counter() - t0)
                        cpu += _used(cpu0, _cpu(daemon))
                        expr = parse(q).fts
                        t0 = time.perf_counter()
                        ro.execute("SELECT rowid, rank FROM fts_bench WHERE fts_bench MATCH ? ORDER BY rank LIMIT 10",
                                   (expr,)).fetchall()
                        raw.append(time.perf_counter() - t0)
                        t0 = time.perf_counter()
                        store.search_page(q, 10)
                        local.append(time.perf_counter() - t0)
                    cpu = cpu / len(qs) * 1000
                    print(f"{kind:14s} {pct(sock, .5):8.2f}ms {pct(sock, .99):6.2f}ms {cpu:10.2f}ms |"
                          f" {pct(raw, .5):10.2f}ms {pct(raw, .99):6.2f}ms | {pct(local, .5):12.2f}ms"
                          f" {pct(local, .99):6.2f}ms | {qs[0]}")
            print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        finally:
            d.stop()


if __name__ == "__main__":
    main()
