"""What `status` progress and latency cost: per change on the hot path, and per status/search call.

Run: .venv/bin/python bench/bench_status.py [--depth N] [--n N]
Each figure is printed beside a baseline measured in the same run:

1. Making a FileChange (now with ``size`` and ``queued``, one monotonic clock read) vs the same
   dataclass without them (the definition before issue 13).
2. The writer's latency record per committed file (a fixed ring slot) vs a list append (the
   acknowledger's former list of latencies).
3. `status`'s pass over the work queue (``WorkQueue.pending``) at ``--depth`` queued changes vs
   ``WorkQueue.stats()`` (constant time); and `search`'s ``incomplete`` check once a sync is
   complete (no queue pass), and its worst case before (a pass finding no crawl change).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from typing import Any

from koradaemon.index.latency import LatencyWindow
from koradaemon.index.syncstate import SyncTracker
from koradaemon.watch.changes import ChangeKind, FileChange
from koradaemon.watch.workqueue import WorkQueue


@dataclass(frozen=True, slots=True)
class OldFileChange:  # FileChange before issue 13
    kind: ChangeKind
    agency_id: str
    root: str
    path: str
    dest_path: str | None = None
    bulk: bool = False


def per_op(fn: Any, n: int) -> float:
    """Best of 5 runs: seconds per call."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - t0)
    return best / n


def paired(fn: Any, base: Any, n: int, rounds: int = 15) -> tuple[float, float]:
    """Seconds per call of ``fn`` and ``base``, run alternately in short rounds, best round of each
    (a shared machine's load hits both alike)."""
    best_fn = best_base = float("inf")
    k = max(1, n // rounds)
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(k)
        t1 = time.perf_counter()
        base(k)
        t2 = time.perf_counter()
        best_fn, best_base = min(best_fn, t1 - t0), min(best_base, t2 - t1)
    return best_fn / k, best_base / k


def bench_changes(n: int) -> tuple[float, float]:
    def new(k: int) -> None:
        for i in range(k):
            FileChange(ChangeKind.INDEX, "a", "r", "p", None, True, i)

    def old(k: int) -> None:
        for _ in range(k):
            OldFileChange(ChangeKind.INDEX, "a", "r", "p", None, True)

    return paired(new, old, n)


def bench_latency(n: int) -> tuple[float, float]:
    window = LatencyWindow()
    values: list[float] = []

    def ring(k: int) -> None:
        for i in range(k):
            window.add("alpha", bool(i & 1), 0.001)

    def listed(k: int) -> None:
        for i in range(k):
            if bool(i & 1) or True:  # the same loop and test as above
                values.append(0.001)
            if len(values) > 4096:
                del values[:2048]

    return paired(ring, listed, n)


class _Crawler:
    def __init__(self) -> None:
        self.state = {"kind": "initial", "started": time.monotonic() - 10, "walked": time.monotonic() - 5,
                      "found": 100, "found_bytes": 10_000, "deletes": 0}

    def agencies(self) -> list[str]:
        return ["alpha"]

    def sync(self, agency_id: str) -> dict[str, Any] | None:
        return dict(self.state)


class _Writer:
    submitted = 0
    finished = 0
    last_commit: float | None = None


def bench_status(depth: int) -> dict[str, float]:
    work = WorkQueue(maxsize=depth + 10)
    for i in range(depth):  # another agency's live burst; alpha has nothing queued
        work.put(FileChange(ChangeKind.INDEX, "beta", "r", f"p{i}", None, False, 100))
    tracker = SyncTracker(_Crawler(), work, _Writer())
    tracker.state("alpha")  # alpha's sync: complete, and noted so

    def fast(k: int) -> None:
        for _ in range(k):
            tracker.incomplete("alpha")

    return {"pending": per_op(lambda k: [work.pending("alpha") for _ in range(k)], 10),
            "crawl_pending": per_op(lambda k: [work.crawl_pending("alpha") for _ in range(k)], 10),
            "stats": per_op(lambda k: [work.stats() for _ in range(k)], 2000),
            "incomplete_fast": per_op(fast, 2000)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="changes / records per timing run")
    ap.add_argument("--depth", type=int, default=100_000, help="queued changes for the status pass")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    new, old = bench_changes(args.n)
    print(f"FileChange: {new * 1e9:.0f} ns vs {old * 1e9:.0f} ns before issue 13 ({new / old:.2f}x; "
          f"+{(new - old) * 1e9:.0f} ns per change)")
    ring, listed = bench_latency(args.n)
    print(f"latency record: ring {ring * 1e9:.0f} ns vs list append {listed * 1e9:.0f} ns ({ring / listed:.2f}x)")
    st = bench_status(args.depth)
    print(f"status queue pass at depth {args.depth}: {st['pending'] * 1e3:.1f} ms vs stats() "
          f"{st['stats'] * 1e6:.1f} us ({st['pending'] / st['stats']:.0f}x)")
    print(f"search's incomplete check: {st['incomplete_fast'] * 1e6:.1f} us once the sync is complete; "
          f"worst case before that (no crawl change in the queue) {st['crawl_pending'] * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
