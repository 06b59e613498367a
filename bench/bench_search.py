"""Search through a live daemon per query class, beside the raw FTS5 query in the same run.

Run: .venv/bin/python bench/bench_search.py [--chunks 100000] [--piece 1000] [--per-class 200] [--root DIR]
     [--gap 0.05] [--classes rare,mid,...]

Another checkout's code (an export of main in TREE): ``cd TREE && PYTHONPATH=TREE
/path/to/.venv/bin/python /path/to/bench/bench_search.py ...``. The daemon is started with
``python -m koradaemon``, which puts the working directory first on ``sys.path``: run from this
tree, the daemon would import this tree's code whatever PYTHONPATH says.

A corpus of ``--chunks`` files (one chunk each) is cut from the Python standard library's
sources; the daemon indexes it; query words are picked from the index by document frequency
(bench/corpus.py ``query_classes``). Each query asks for the top 10 with snippets.

What is measured, per class, each in its own loop over the class's queries (in this order):

* **socket, back to back**: each query sent through the control socket as soon as the previous
  answer arrived (one connection per loop: the daemon lowers a connection thread's priority for
  good once one of its searches used ``search.SLOW_S`` of CPU time).
* **socket, spaced**: the same with a pause of ``--gap`` seconds before each query, as an agent
  issues them: the daemon's threads are asleep when the query comes, its CPU caches hold
  whatever ran in between. This is the figure a user sees; back to back is the floor.
* **daemon CPU/q**: the daemon process's CPU time per search in the spaced loop (all its
  threads, read before and after each call from the scheduler's per-thread run time): unlike
  the latencies, it hardly changes with the machine's load.
* **raw FTS5**: the baseline, in this process on the same database file: FTS5's own
  ``ORDER BY rank LIMIT 10`` of the same expression, without snippets (for a word in most chunks
  a BM25 pass over all of them: hundreds of milliseconds).
* **in-process**: the daemon's search code in this process (no socket, no daemon threads), wall
  time and this thread's CPU time per query.

An earlier version ran the four one query at a time (socket, raw, in-process, next query):
the raw query's long scan between two socket queries left the daemon to start each query
asleep and on cold caches, so its socket figures were neither back to back nor a controlled
pause. Latencies depend on the machine's load (printed before and after each class); compare
them only with a baseline from the same run.
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


def _socket_loop(d: LiveDaemon, token: str, qs: list[str], daemon: psutil.Process | None,
                 gap: float) -> tuple[list[float], float]:
    """Latency of each query through the socket (one new connection), with ``gap`` seconds of
    sleep before each; and the daemon's mean CPU time per query (ms) when ``daemon`` is given."""
    lat: list[float] = []
    cpu = 0.0
    with d.client() as c:
        for q in qs:
            if gap:
                time.sleep(gap)
            cpu0 = _cpu(daemon) if daemon else {}
            t0 = time.perf_counter()
            c.call("search", "bench", token, query=q, limit=10)
            lat.append(time.perf_counter() - t0)
            if daemon:
                cpu += _used(cpu0, _cpu(daemon))
    return lat, cpu / len(qs) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--piece", type=int, default=1000)
    ap.add_argument("--per-class", type=int, default=200)
    ap.add_argument("--settle", type=float, default=40.0,
                    help="seconds to wait after the crawl (the writer merges FTS segments when idle)")
    ap.add_argument("--gap", type=float, default=0.05, help="seconds before each query of the spaced loop")
    ap.add_argument("--classes", help="comma-separated classes to run (default: all)")
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
            wanted = args.classes.split(",") if args.classes else list(classes)
            print(f"{'class':14s} {'back-to-back p50':>16s} {'p99':>7s} | {'spaced p50':>10s} {'p99':>7s}"
                  f" {'daemon CPU/q':>12s} | {'raw FTS5 p50':>12s} {'p99':>7s} | {'in-process p50':>14s}"
                  f" {'p99':>7s} {'CPU/q':>6s} | load | example")
            with d.client() as c:
                pings = []
                for _ in range(args.per_class):
                    t0 = time.perf_counter()
                    c.call("ping", "bench", token)
                    pings.append(time.perf_counter() - t0)
            print(f"{'(ping)':14s} {pct(pings, .5):14.2f}ms {pct(pings, .99):5.2f}ms |"
                  "  the socket round trip alone")
            for kind in wanted:
                qs = classes[kind]
                back = _socket_loop(d, token, qs, None, 0.0)[0]
                spaced, cpu = _socket_loop(d, token, qs, daemon, args.gap)
                raw = []
                for q in qs:
                    expr = parse(q).fts
                    t0 = time.perf_counter()
                    ro.execute("SELECT rowid, rank FROM fts_bench WHERE fts_bench MATCH ? ORDER BY rank LIMIT 10",
                               (expr,)).fetchall()
                    raw.append(time.perf_counter() - t0)
                local = []
                c0 = time.thread_time()
                for q in qs:
                    t0 = time.perf_counter()
                    store.search_page(q, 10)
                    local.append(time.perf_counter() - t0)
                local_cpu = (time.thread_time() - c0) / len(qs) * 1000
                print(f"{kind:14s} {pct(back, .5):14.2f}ms {pct(back, .99):5.2f}ms | {pct(spaced, .5):8.2f}ms"
                      f" {pct(spaced, .99):5.2f}ms {cpu:10.2f}ms | {pct(raw, .5):10.2f}ms {pct(raw, .99):5.2f}ms |"
                      f" {pct(local, .5):12.2f}ms {pct(local, .99):5.2f}ms {local_cpu:4.2f}ms |"
                      f" {os.getloadavg()[0]:.2f} | {qs[0]}")
            print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        finally:
            d.stop()


if __name__ == "__main__":
    main()
