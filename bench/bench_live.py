"""Live daemon figures: start-up crawl rate and peak RSS, close→searchable latency, search p50/p99.

Run: .venv/bin/python bench/bench_live.py [--files 20000] [--size 2000] [--edits 300] [--queries 1000]
     [--debounce-ms 0] [--burst 10000]

* crawl: a corpus is generated, then the daemon starts on it; MB/s until the index holds it all.
* close→searchable: write + close a file, then poll the database read-only until its sha256 is
  indexed; beside the same edits through ``raw_live.py`` (raw inotify → FTS5, one transaction per
  file, no queues, no audit) in the same run.
* burst (``--burst N``): N files written live, N files moved into the root at once, the N written
  files rewritten (a branch switch); files/s beside the start-up crawl's files/s (the bulk rate).
* search: top-10 with snippets through the control socket, beside the same query run in-process
  on the same database file (the floor).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import apsw
import psutil
from corpus import WORDS, generated_corpus, make_corpus, query_classes
from daemon_proc import LiveDaemon

from koradaemon.index.retrieval import FileTexts
from koradaemon.index.store import AgencyStore


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))] * 1000


def sample_rss(d: LiveDaemon, stop: threading.Event, peak: list[float]) -> None:
    while not stop.wait(0.05):
        with contextlib.suppress(psutil.Error, AssertionError):
            peak[0] = max(peak[0], d.rss_mb())


def bench_latency(write_dir: Path, db: Path, sql: str, key: str, edits: int) -> list[float]:
    """Write + close a file, then poll ``db`` read-only until ``sql`` finds its sha256 (the file is searchable)."""
    ro = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    out = []
    rnd = random.Random(3)
    write_dir.mkdir(exist_ok=True)
    for i in range(-1, edits):  # edit -1 is not timed: a new directory's watch is set up after its first
        # files are written (those are found by a scan, then wait ZERO_HOLD_S for a close already gone)
        body = (" ".join(rnd.choices(WORDS, k=300)) + f"\nedit{i}\n").encode()
        digest = hashlib.sha256(body).hexdigest()
        name = f"e{i % 50}.txt" if i >= 0 else "warm-up.txt"
        t0 = time.perf_counter()
        with open(write_dir / name, "wb") as fh:
            fh.write(body)
        while not ro.execute(sql, (key + name, digest)).fetchone():  # the moment the new content is searchable
            if time.perf_counter() - t0 > 10:
                raise SystemExit(f"edit {i} not searchable after 10 s")
            time.sleep(0.0001)
        if i < 0:
            continue
        out.append(time.perf_counter() - t0)
    ro.close()
    return out


KINDS = ("very common", "mid", "two-term AND", "phrase", "prefix", "rare")


def daemon_latency(d: LiveDaemon, edits: int) -> list[float]:
    sql = "SELECT 1 FROM documents WHERE agency_id='bench' AND root='corpus' AND path=? AND sha256=?"
    return bench_latency(d.root / "corpus" / "live", d.root / "kora_kernel.db", sql, "live/", edits)


def raw_latency(base: Path, edits: int) -> list[float]:
    """The floor: raw inotify → FTS5, one transaction per file, in a subprocess like the daemon."""
    watch, db = base / "raw", base / "raw.db"
    watch.mkdir()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("raw_live.py")), str(watch), str(db)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return bench_latency(watch, db, "SELECT 1 FROM documents WHERE path=? AND sha256=?", "", edits)
    finally:
        proc.terminate()
        proc.wait(10)


def indexed_count(db: Path) -> int:
    ro = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return int(ro.execute("SELECT count(*) FROM documents WHERE agency_id='bench'").fetchone()[0])
    finally:
        ro.close()


def wait_count(db: Path, target: int, t0: float, timeout: float = 900) -> float:
    while indexed_count(db) < target:
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"burst did not converge in {timeout} s")
        time.sleep(0.02)
    return time.perf_counter() - t0


def bench_burst(d: LiveDaemon, base: Path, files: int, size: int) -> dict[str, float]:
    """Seconds until a burst is indexed: N files written live, N files moved in, N files rewritten."""
    db = d.root / "kora_kernel.db"
    out: dict[str, float] = {}
    before = indexed_count(db)
    generated_corpus(base / "staged-w", files, size, seed=21)  # generated outside the root, then written
    staged = [(p.relative_to(base / "staged-w"), p.read_bytes()) for p in sorted((base / "staged-w").rglob("*.txt"))]
    dest = d.root / "corpus" / "burst-written"
    t0 = time.perf_counter()
    for rel, data in staged:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    out["written"] = wait_count(db, before + files, t0)
    generated_corpus(base / "staged", files, size, seed=22)
    t0 = time.perf_counter()
    os.rename(base / "staged", d.root / "corpus" / "burst-moved")
    out["moved in"] = wait_count(db, before + 2 * files, t0)
    rewritten = sorted((d.root / "corpus" / "burst-written").rglob("*.txt"))
    new = [(p, p.read_bytes()[::-1]) for p in rewritten]
    want = {f"burst-written/{p.relative_to(dest)}": hashlib.sha256(data).hexdigest() for p, data in new}
    ro = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    sql = ("SELECT path, sha256 FROM documents WHERE agency_id='bench'"
           " AND path >= 'burst-written/' AND path < 'burst-written0'")
    t0 = time.perf_counter()
    for p, data in new:  # like a branch switch: every file gets new content
        p.write_bytes(data)
    while {k: v for k, v in ro.execute(sql).fetchall()} != want:
        if time.perf_counter() - t0 > 900:
            raise SystemExit("rewrite burst did not converge")
        time.sleep(0.05)
    out["rewritten"] = time.perf_counter() - t0
    ro.close()
    return out




def git(repo: Path, *args: str) -> None:
    # gc.auto=0: a detached auto-gc packing objects in the background would change files under
    # the watched root while the bench measures (and vanish from under the size count).
    subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "-c", "init.defaultBranch=one",
                    "-c", "gc.auto=0", "-c", "maintenance.auto=false", *args],
                   cwd=repo, check=True, stdout=subprocess.DEVNULL)


def make_repo(repo: Path, staging: Path, files: int, size: int) -> dict[str, str]:
    """A git repository (inside the watched root, made before the daemon starts) with ``files`` files on
    branch ``one`` (checked out) and new content for every one of them on branch ``two``; returns the
    sha256 each file must have in the index once ``two`` is checked out."""
    generated_corpus(repo, files, size, seed=31)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    git(repo, "checkout", "-qb", "two")
    generated_corpus(staging, files, size, seed=32)
    want: dict[str, str] = {}
    for p in sorted((staging).rglob("*.txt")):
        rel = p.relative_to(staging)
        data = p.read_bytes()
        (repo / rel).write_bytes(data)
        want[f"repo/{rel}"] = hashlib.sha256(data).hexdigest()
    git(repo, "commit", "-qam", "two")
    git(repo, "checkout", "-q", "one")
    return want


def bench_checkout(d: LiveDaemon, repo: Path, want: dict[str, str]) -> float:
    """Seconds from ``git checkout two`` until the index holds branch two's version of every file."""
    ro = apsw.Connection(str(d.root / "kora_kernel.db"), flags=apsw.SQLITE_OPEN_READONLY)
    sql = "SELECT path, sha256 FROM documents WHERE agency_id='bench' AND path >= 'repo/' AND path < 'repo0'"
    try:
        t0 = time.perf_counter()
        git(repo, "checkout", "-q", "two")
        while dict(ro.execute(sql).fetchall()) != want:
            if time.perf_counter() - t0 > 900:
                raise SystemExit("checkout did not converge")
            time.sleep(0.02)
        return time.perf_counter() - t0
    finally:
        ro.close()


def bench_search(d: LiveDaemon, queries: int) -> tuple[list[float], list[float]]:
    # Words taken from the index itself by document frequency (bench/corpus.py query_classes),
    # interleaved class by class in the order of KINDS.
    ro = apsw.Connection(str(d.root / "kora_kernel.db"), flags=apsw.SQLITE_OPEN_READONLY)
    classes = query_classes(ro, "fts_bench", random.Random(5), max(1, queries // len(KINDS)), d.root)
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
    store = AgencyStore(conn, "bench", FileTexts(d.root, ("corpus",)))
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
    ap.add_argument("--burst", type=int, default=0, help="files per burst (0: no burst test)")
    ap.add_argument("--corpus", choices=("generated", "stdlib"), default="generated")
    ap.add_argument("--checkout", type=int, default=0,
                    help="files a real `git checkout` changes while the daemon runs (0: no checkout test)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kora-live-") as tmp:
        d = LiveDaemon(Path(tmp), args.debounce_ms)
        nfiles, nbytes = make_corpus(args.corpus, Path(tmp) / "corpus", args.files, args.size)
        repo_want: dict[str, str] = {}
        if args.checkout:
            repo_want = make_repo(Path(tmp) / "corpus" / "repo", Path(tmp) / "repo-two", args.checkout, args.size)
            nfiles += args.checkout
            nbytes += sum(p.stat().st_size for p in (Path(tmp) / "corpus" / "repo").rglob("*.txt"))
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
            time.sleep(1.5)  # the writer truncates the WAL after a second without work
            db_bytes = sum(p.stat().st_size for p in d.root.glob("kora_kernel.db*"))
            wal = d.root / "kora_kernel.db-wal"
            wal_bytes = wal.stat().st_size if wal.exists() else 0
            print(f"  database + WAL after the crawl: {db_bytes / 1e6:.1f} MB (WAL {wal_bytes / 1e6:.1f} MB),"
                  f" {db_bytes / nbytes:.2f}x the text indexed")
            if sync.get("seconds"):
                print(f"  daemon's own initial sync: {sync['seconds']:.2f} s, {sync['mb_per_s']} MB/s,"
                      f" {sync['files'] / sync['seconds']:.0f} files/s")
            lat = daemon_latency(d, args.edits)
            raw = raw_latency(Path(tmp), args.edits)
            print(f"close→searchable ({args.edits} edits, debounce {args.debounce_ms} ms): "
                  f"p50 {pct(lat, 0.5):.2f} ms, p99 {pct(lat, 0.99):.2f} ms, max {max(lat) * 1000:.2f} ms;"
                  f" raw inotify→FTS5 p50 {pct(raw, 0.5):.2f} ms, p99 {pct(raw, 0.99):.2f} ms,"
                  f" max {max(raw) * 1000:.2f} ms")
            if args.burst:
                rate = sync["files"] / sync["seconds"] if sync.get("seconds") else nfiles / dt
                for kind, secs in bench_burst(d, Path(tmp), args.burst, args.size).items():
                    print(f"burst of {args.burst} files {kind}: {secs:.2f} s, {args.burst / secs:.0f} files/s,"
                          f" {args.burst / secs / rate:.2f} of the start-up crawl's {rate:.0f} files/s")
            if args.checkout:
                rate = sync["files"] / sync["seconds"] if sync.get("seconds") else nfiles / dt
                secs = bench_checkout(d, Path(tmp) / "corpus" / "repo", repo_want)
                print(f"git checkout of a branch changing {args.checkout} files: {secs:.2f} s,"
                      f" {args.checkout / secs:.0f} files/s, {args.checkout / secs / rate:.2f} of the start-up"
                      f" crawl's {rate:.0f} files/s")
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
