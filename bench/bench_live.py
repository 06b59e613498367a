"""Live daemon figures: start-up crawl rate and peak RSS, close→searchable latency, search p50/p99.

Run: .venv/bin/python bench/bench_live.py [--files 20000] [--size 2000] [--edits 300] [--queries 1000]

* crawl: a corpus is generated, then the daemon starts on it; MB/s until the index holds it all.
* close→searchable: write + close a file, then poll the database read-only until its sha256 is
  indexed; printed beside the configured debounce.
* search: top-10 with snippets through the control socket, beside the same query run in-process
  on the same database file (the floor).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import apsw
import psutil
from corpus import WORDS, generated_corpus, query_classes, stdlib_corpus
from daemon_proc import LiveDaemon

from koradaemon.index.store import AgencyStore


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))] * 1000


def sample_rss(d: LiveDaemon, stop: threading.Event, peak: list[float]) -> None:
    while not stop.wait(0.05):
        with contextlib.suppress(psutil.Error, AssertionError):
            peak[0] = max(peak[0], d.rss_mb())


def bench_latency(d: LiveDaemon, edits: int) -> list[float]:
    ro = apsw.Connection(str(d.root / "kora_kernel.db"), flags=apsw.SQLITE_OPEN_READONLY)
    out = []
    rnd = random.Random(3)
    for i in range(edits):
        body = (" ".join(rnd.choices(WORDS, k=300)) + f"\nedit{i}\n").encode()
        digest = hashlib.sha256(body).hexdigest()
        path = d.root / "corpus" / "live" / f"e{i % 50}.txt"
        path.parent.mkdir(exist_ok=True)
        t0 = time.perf_counter()
        with open(path, "wb") as fh:
            fh.write(body)
        while True:  # poll the database itself: the moment the new content is searchable
            row = ro.execute(
                "SELECT 1 FROM documents WHERE agency_id='bench' AND root='corpus' AND path=? AND sha256=?",
                (f"live/e{i % 50}.txt", digest),
            ).fetchone()
            if row:
                break
            if time.perf_counter() - t0 > 10:
                raise SystemExit(f"edit {i} not searchable after 10 s")
            time.sleep(0.0002)
        out.append(time.perf_counter() - t0)
    ro.close()
    return out


KINDS = ("very common", "mid", "two-term AND", "phrase", "prefix", "rare")


def bench_search(d: LiveDaemon, queries: int) -> tuple[list[float], list[float]]:
    # Words taken from the index itself by document frequency (bench/corpus.py query_classes),
    # interleaved class by class in the order of KINDS.
    ro = apsw.Connection(str(d.root / "kora_kernel.db"), flags=apsw.SQLITE_OPEN_READONLY)
    classes = query_classes(ro, "fts_bench", random.Random(5), max(1, queries // len(KINDS)))
    ro.close()
    per_kind = [classes[k] for k in KINDS]
    qs = [per_kind[i % len(KINDS)][i // len(KINDS)] for i in range(len(KINDS) * len(per_kind[0]))]
    token = d.token()
    via_socket = []
    with d.client() as c:
        for q in qs:
            t0 = time.perf_counter()
            c.call("search", "bench", token, query=q, limit=10)
            via_socket.append(time.perf_counter() - t0)
    conn = apsw.Connection(str(d.root / "kora_kernel.db"), flags=apsw.SQLITE_OPEN_READONLY)
    store = AgencyStore(conn, "bench")
    direct = []
    for q in qs:
        t0 = time.perf_counter()
        store.search(q, 10)
        direct.append(time.perf_counter() - t0)
    return via_socket, direct


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--edits", type=int, default=300)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--debounce-ms", type=int, default=20)
    ap.add_argument("--corpus", choices=("generated", "stdlib"), default="generated")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kora-live-") as tmp:
        d = LiveDaemon(Path(tmp), args.debounce_ms)
        if args.corpus == "stdlib":
            nfiles, nbytes = stdlib_corpus(Path(tmp) / "corpus")
        else:
            nfiles, nbytes = generated_corpus(Path(tmp) / "corpus", args.files, args.size)
        peak = [0.0]
        stop = threading.Event()
        try:

            def start_sampler() -> None:
                while d.proc is None:
                    time.sleep(0.01)
                sample_rss(d, stop, peak)

            sampler = threading.Thread(target=start_sampler, daemon=True)
            sampler.start()
            dt = d.start()
            print(f"start-up crawl: {nfiles} files, {nbytes / 1e6:.1f} MB in {dt:.2f} s: "
                  f"{nbytes / 1e6 / dt:.1f} MB/s, {nfiles / dt:.0f} files/s, peak RSS {peak[0]:.1f} MB"
                  " (from process launch, interpreter start-up included)")
            sync: dict[str, float] = {}
            for _ in range(40):  # the main loop notes it on its next tick
                sync = (d.status() or {}).get("crawl", {}).get("initial_sync") or {}
                if sync:
                    break
                time.sleep(0.05)
            if sync.get("seconds"):
                print(f"  daemon's own initial sync: {sync['seconds']:.2f} s, {sync['mb_per_s']} MB/s,"
                      f" {sync['files'] / sync['seconds']:.0f} files/s")
            lat = bench_latency(d, args.edits)
            print(f"close→searchable ({args.edits} edits, debounce {args.debounce_ms} ms): "
                  f"p50 {pct(lat, 0.5):.2f} ms, p99 {pct(lat, 0.99):.2f} ms, max {max(lat) * 1000:.2f} ms"
                  f"  (beyond debounce: p50 {pct(lat, 0.5) - args.debounce_ms:.2f} ms,"
                  f" p99 {pct(lat, 0.99) - args.debounce_ms:.2f} ms)")
            sock, direct = bench_search(d, args.queries)
            print(f"search top-10 via socket: p50 {pct(sock, 0.5):.2f} ms, p99 {pct(sock, 0.99):.2f} ms;"
                  f" in-process floor p50 {pct(direct, 0.5):.2f} ms, p99 {pct(direct, 0.99):.2f} ms;"
                  f" mean ratio {statistics.mean(sock) / statistics.mean(direct):.2f}")
            for k, kind in enumerate(KINDS):
                s, f = sock[k :: len(KINDS)], direct[k :: len(KINDS)]
                print(f"  {kind:18s} via socket p50 {pct(s, 0.5):6.2f} ms p99 {pct(s, 0.99):6.2f} ms"
                      f" | in-process p50 {pct(f, 0.5):6.2f} ms p99 {pct(f, 0.99):6.2f} ms")
            print(f"daemon peak RSS overall: {max(peak[0], d.rss_mb()):.1f} MB")
        finally:
            stop.set()
            d.stop()


if __name__ == "__main__":
    main()
