"""In-process CPU per search, per query class, on a prepared data root (no daemon, no socket).

Run: .venv/bin/python bench/prof_search.py ROOT [CLASS ...] [--profile CLASS] [--per-class N]

Each class's queries run once to warm the caches, then once timed (thread CPU time and wall);
``--profile CLASS`` adds a cProfile of that class's third run, sorted by own time.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import apsw
from corpus import query_classes

from koradaemon.index.retrieval import FileTexts
from koradaemon.index.store import AgencyStore


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("classes", nargs="*")
    ap.add_argument("--profile")
    ap.add_argument("--per-class", type=int, default=200)
    ap.add_argument("--save", type=Path, help="write the query classes here (or read them if it exists)")
    args = ap.parse_args()
    ro = apsw.Connection(str(args.root / "kora_kernel.db"), flags=apsw.SQLITE_OPEN_READONLY)
    store = AgencyStore(ro, "bench", FileTexts(args.root, ("corpus",)))
    if args.save and args.save.exists():
        classes = json.loads(args.save.read_text())
    else:
        classes = query_classes(ro, "fts_bench", random.Random(5), args.per_class, args.root)
        if args.save:
            args.save.write_text(json.dumps(classes))
    print(f"load {os.getloadavg()[0]:.2f}")
    for kind in args.classes or list(classes):
        qs = classes[kind]
        for q in qs:
            store.search_page(q, 10)
        c0 = time.thread_time()
        lat = []
        for q in qs:
            t1 = time.perf_counter()
            store.search_page(q, 10)
            lat.append(time.perf_counter() - t1)
        cpu = (time.thread_time() - c0) / len(qs) * 1000
        lat.sort()
        p50, p99 = lat[len(lat) // 2] * 1000, lat[int(len(lat) * .99)] * 1000
        print(f"{kind:14s} cpu/q {cpu:6.2f} ms  p50 {p50:6.2f}  p99 {p99:6.2f}")
        if kind == args.profile:
            pr = cProfile.Profile()
            pr.enable()
            for q in qs:
                store.search_page(q, 10)
            pr.disable()
            pstats.Stats(pr).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
