"""CPU time per search, in-process, per query class: this checkout's code, optionally beside another's.

Run: .venv/bin/python bench/bench_search_cpu.py DB [--compare TREE] [--per-class 200]

DB is a data root's ``kora_kernel.db`` built by bench_search.py (``--root``; agency ``bench``).
TREE is another checkout's tree (``git archive main | tar -x -C TREE``): its ``koradaemon``
package is copied under another name and both codes search the same file, query by query in a
random order, each on its own read connection. The figure is the thread's CPU time
(``time.thread_time``), which a busy machine changes far less than wall time.
"""

from __future__ import annotations

import argparse
import importlib
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import apsw
from corpus import query_classes

from koradaemon.index.retrieval import FileTexts
from koradaemon.index.store import AgencyStore


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("db", type=Path)
    ap.add_argument("--compare", type=Path, help="another checkout's tree (holding koradaemon/)")
    ap.add_argument("--per-class", type=int, default=200)
    args = ap.parse_args()

    def ro() -> apsw.Connection:
        return apsw.Connection(str(args.db), flags=apsw.SQLITE_OPEN_READONLY)

    root = args.db.parent  # the data root: the chunks' text is read from its files
    stores: dict[str, Any] = {"this": AgencyStore(ro(), "bench", FileTexts(root, ("corpus",)))}
    with tempfile.TemporaryDirectory(prefix="kora-compare-") as tmp:
        if args.compare:
            shutil.copytree(args.compare / "koradaemon", Path(tmp) / "kora_compare")
            sys.path.insert(0, tmp)
            other = importlib.import_module("kora_compare.index.store")
            texts = importlib.import_module("kora_compare.index.retrieval").FileTexts(root, ("corpus",))
            stores["compare"] = other.AgencyStore(ro(), "bench", texts)
        classes = query_classes(ro(), "fts_bench", random.Random(5), args.per_class, root)
        for q in classes["rare"][:20]:  # warm both caches
            for s in stores.values():
                s.search_page(q, 10)
        rnd = random.Random(7)
        print(f"{'class':14s} " + " | ".join(f"{k + ' p50':>12s} {'p99':>7s} {'mean':>6s}" for k in stores)
              + (" | this/compare (mean)" if len(stores) > 1 else ""))
        for kind, qs in classes.items():
            times: dict[str, list[float]] = {k: [] for k in stores}
            for q in qs:
                for k in rnd.sample(list(stores), len(stores)):
                    t0 = time.thread_time()
                    stores[k].search_page(q, 10, time_limit=60.0)
                    times[k].append(time.thread_time() - t0)
            means = {k: sum(v) / len(v) * 1000 for k, v in times.items()}
            cols = " | ".join(f"{pct(v, .5):12.2f} {pct(v, .99):7.2f} {means[k]:6.2f}" for k, v in times.items())
            ratio = f" | {means['this'] / means['compare']:.2f}" if len(stores) > 1 else ""
            print(f"{kind:14s} {cols}{ratio}")


if __name__ == "__main__":
    main()
