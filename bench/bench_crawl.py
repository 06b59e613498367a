"""The daemon's start-up crawl with and without the prep worker process, alternating in one run.

Run: .venv/bin/python bench/bench_crawl.py [--files 100000] [--size 1000] [--corpus generated|stdlib] [--rounds 2]

Each round starts a real daemon on a fresh data root holding the same corpus (moved in, not
copied), once with ``index.prep_process: false`` (every file prepared in the daemon's threads: the
same-run baseline) and once with it on. Per run: files/s of the daemon's own initial sync (from
status), wall time from launch to ready and idle, the daemon's CPU seconds and the prep worker's,
peak RSS of the daemon and of the prep worker.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import psutil
from corpus import fresh, make_corpus
from daemon_proc import LiveDaemon, Sampler


def one_run(base: Path, corpus: Path, prep: bool, tag: str) -> dict[str, float]:
    root = fresh(base / tag)
    d = LiveDaemon(root, prep_process=prep)
    (root / "corpus").rmdir()
    corpus.rename(root / "corpus")
    sampler = Sampler(d)
    try:
        with sampler:
            wall = d.start()
            sync: dict[str, float] = {}
            for _ in range(100):
                sync = (d.status() or {}).get("crawl", {}).get("initial_sync") or {}
                if sync:
                    break
                time.sleep(0.05)
            assert d.proc is not None
            t = psutil.Process(d.proc.pid).cpu_times()
            cpu = t.user + t.system
    finally:
        d.stop()
        (root / "corpus").rename(corpus)
        shutil.rmtree(root, ignore_errors=True)
    return {"files_s": sync["files"] / sync["seconds"], "wall": wall, "cpu": cpu,
            "child_cpu": sum(sampler.child_cpu.values()), "rss": sampler.peak, "child_rss": sampler.child_peak}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--corpus", choices=("generated", "stdlib"), default="generated")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kora-crawl-") as tmp:
        base = Path(tmp)
        corpus = fresh(base / "the-corpus")
        nfiles, nbytes = make_corpus(args.corpus, corpus, args.files, args.size)
        print(f"corpus: {args.corpus}, {nfiles} files, {nbytes / 1e6:.1f} MB; load {os.getloadavg()}")
        ratios, cpu_ratios = [], []
        for r in range(args.rounds):
            off = one_run(base, corpus, False, f"off{r}")
            on = one_run(base, corpus, True, f"on{r}")
            for name, f in (("threads only", off), ("prep worker ", on)):
                print(f"round {r + 1} {name}: initial sync {f['files_s']:7.0f} files/s"
                      f" ({f['files_s'] * nbytes / nfiles / 1e6:5.1f} MB/s), launch to idle {f['wall']:6.2f} s,"
                      f" CPU daemon {f['cpu']:6.2f} s + worker {f['child_cpu']:5.2f} s,"
                      f" peak RSS daemon {f['rss']:5.1f} MB, worker {f['child_rss']:5.1f} MB")
            ratios.append(on["files_s"] / off["files_s"])
            cpu_ratios.append((off["cpu"]) / (on["cpu"] + on["child_cpu"]))
        print(f"median files/s ratio (worker / threads only): {statistics.median(ratios):.2f};"
              f" CPU ratio (threads-only CPU / daemon + worker CPU): {statistics.median(cpu_ratios):.2f};"
              f" load {os.getloadavg()}")


if __name__ == "__main__":
    main()
