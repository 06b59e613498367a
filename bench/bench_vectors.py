"""Hybrid retrieval: recall@10 per mode on a hand-labelled set, and what vectors cost.

Run: .venv/bin/python bench/bench_vectors.py [--distractor-mb 8] [--live-mb 8] [--rounds 3] [--passages 100000]
     [--dims 256]

1. The same corpus (the labelled topical documents of ``retrieval_set.py`` among the standard
   library's sources as distractors) is indexed by a daemon with vectors off, then by one with
   vectors on: keyword initial-sync speed of both (ratio), the vector catch-up (MB/s and lag as
   status reports them), and the daemon's RSS in both runs (the increase). Right after the initial
   sync, ``--live-mb`` more of other standard-library sources are moved into the root at once and
   keyword-indexed: with vectors on, while the vector thread loads and embeds its backlog (the
   cost of vectors to keyword indexing while they have work). ``--rounds`` off/on pairs, interleaved.
2. recall@10 of keyword, vector and hybrid search over the socket, for the exact-term half and
   the paraphrase half of the queries.
3. The embedding function on 4 MB of passages beside wordllama's own ``embed`` (same-run baseline).
4. Vector top-10 latency (p50/p99) through the daemon's own search code at ``--passages`` passages,
   after embedding them with the daemon's embedding step (its MB per CPU-second).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import apsw
from corpus import fresh, stdlib_corpus
from daemon_proc import LiveDaemon
from retrieval_set import TOPICS, check_labels, queries

from koradaemon.errors import QueryError

POLL_S = 0.5  # vectors.poll_s (the default)
CONFIG = """\
version: 1
log: {{level: info, format: json}}
index: {{workers: 1}}
watch: {{queue_max: 200000}}
vault: {{enabled: false}}
vectors: {{enabled: {enabled}, dims: {dims}}}
agencies:
  - agency_id: bench
    roots: [corpus]
  - agency_id: live
    roots: [live]
"""


class Daemon(LiveDaemon):
    def __init__(self, root: Path, vectors: bool, dims: int) -> None:
        super().__init__(root)
        self.config.write_text(CONFIG.format(enabled="true" if vectors else "false", dims=dims))

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        with self.client() as c:
            return c.call(op, "bench", self.token(), **args)

    def vectors(self, agency: str = "bench") -> dict[str, Any]:
        try:
            with self.client() as c:
                token = (self.root / "run" / "tokens" / f"{agency}.token").read_text().strip()
                st = c.call("status", agency, token)
        except Exception:
            return {}
        return dict(st["agencies"][agency]["vectors"])


def build_corpus(dest: Path, distractor_mb: int) -> int:
    fresh(dest)
    _, total = stdlib_corpus(dest / "stdlib", distractor_mb << 20)
    for name, doc, _, _ in TOPICS:
        (dest / "topics").mkdir(exist_ok=True)
        (dest / "topics" / name).write_text(doc + "\n")
        total += len(doc) + 1
    return total


def initial_sync(d: Daemon, timeout: float = 120.0) -> dict[str, Any]:
    """The daemon's own initial-sync figures: its ``initial_sync_done`` log line (the operator's view;
    an agency's status does not carry them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # the main loop notes the initial sync on its next tick
        for line in (d.root / "daemon.log").read_text(errors="replace").splitlines():
            if '"initial_sync_done"' in line:
                return dict(json.loads(line))
        time.sleep(0.1)
    raise SystemExit("the daemon logged no initial_sync_done")


def live_corpus(dest: Path, skip_mb: int, mb: int) -> tuple[int, int]:
    """Standard-library sources after the first ``skip_mb`` (those are the distractors): (files, bytes)."""
    return stdlib_corpus(dest, mb << 20, skip_bytes=skip_mb << 20)


def live_burst(d: Daemon, staged: Path, files: int, name: str = "live", timeout: float = 300.0) -> float:
    """Move ``staged`` into the root at once; seconds until all its files are keyword-indexed."""
    conn = apsw.Connection(str(d.root / "kora_kernel.db"), flags=apsw.SQLITE_OPEN_READONLY)
    conn.set_busy_timeout(5000)
    t0 = time.perf_counter()
    staged.rename(d.root / "live" / name)  # another agency's root: the recall queries do not see them
    try:
        while time.perf_counter() - t0 < timeout:
            (n,) = next(iter(conn.execute("SELECT count(*) FROM documents WHERE agency_id = 'live' AND path LIKE ?",
                                          (f"{name}/%",))))
            if n >= files:
                return time.perf_counter() - t0
            time.sleep(0.01)
    finally:
        conn.close()
    raise SystemExit(f"the live files were not indexed within {timeout} s")


def run_daemon(work: Path, corpus_mb: int, vectors: bool, dims: int, live_mb: int = 0) -> tuple[Daemon, dict[str, Any]]:
    root = fresh(work / ("on" if vectors else "off"))
    total = build_corpus(root / "corpus", corpus_mb)
    fresh(root / "live")
    staged, staged2 = fresh(root / "staged"), fresh(root / "staged2")
    live_files, live_bytes = live_corpus(staged, corpus_mb, live_mb) if live_mb else (0, 0)
    live2_files, live2_bytes = live_corpus(staged2, corpus_mb + live_mb, live_mb) if live_mb else (0, 0)
    d = Daemon(root, vectors, dims)
    d.start()  # returns when the keyword index is idle
    sync = initial_sync(d)
    out: dict[str, Any] = {"bytes": total, "keyword_s": sync.get("seconds"), "keyword_mb_s": sync.get("mb_per_s")}
    if live_files:  # with vectors on: the vector thread is loading or embedding its backlog meanwhile
        out["live_s"] = round(live_burst(d, staged, live_files), 3)
        out["live_mb"] = round(live_bytes / 1e6, 1)
        out["live_vectors"] = d.vectors().get("state") if vectors else None
    if vectors:
        t0 = time.perf_counter()
        lags, peak = [], 0.0
        while True:
            v = d.vectors()
            lags.append(v.get("lag_bytes", 0))
            peak = max(peak, d.rss_mb())
            if v.get("state") == "error":
                raise SystemExit(f"vectors failed: {v.get('error')}")
            if v.get("state") == "ready" and v.get("lag_chunks") == 0 and v.get("passages"):
                break
            time.sleep(0.2)
        out.update(catchup_after_keyword_s=round(time.perf_counter() - t0, 2), max_lag_mb=round(max(lags) / 1e6, 2),
                   vector_status=v, peak_rss_mb=round(peak, 1))
        deadline = time.monotonic() + 300
        while d.vectors("live").get("lag_chunks", 1) and time.monotonic() < deadline:  # the live agency's too
            time.sleep(0.2)
        out["live_vector_status"] = d.vectors("live")
        time.sleep(2 * POLL_S)  # the vector thread has seen it has no work and handed batch memory back
    out["rss_mb"] = round(d.rss_mb(), 1)
    if live2_files:  # vectors (on) loaded and caught up: they embed the new chunks while the keyword index takes them
        out["live2_s"] = round(live_burst(d, staged2, live2_files, "live2"), 3)
        out["live2_mb"] = round(live2_bytes / 1e6, 1)
    return d, out


def recall(d: Daemon) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for mode in ("keyword", "vector", "hybrid"):
        got: dict[str, list[int]] = {"exact": [], "paraphrase": []}
        for half, query, want in queries():
            try:
                hits = d.call("search", query=query, limit=10, mode=mode)["hits"]
            except QueryError:  # not valid FTS5 syntax (e.g. a hyphen): keyword mode finds nothing
                hits = []
            got[half].append(int(any(h["path"] == f"topics/{want}" for h in hits)))
        table[mode] = {h: round(100 * sum(v) / len(v), 1) for h, v in got.items()}
    return table


def knn_corpus(root: Path, passages: int) -> None:
    """``root`` with files of about ``passages`` passages of standard-library text and their kernel rows
    (documents and 50 KB chunks written directly, as the writer would)."""
    from koradaemon.index.db import open_db

    fresh(root)
    src = fresh(root / "texts")
    stdlib_corpus(src, 24 << 20)
    text = b"".join(p.read_bytes() for p in sorted(src.rglob("*.py")))
    need = passages * 1536
    (root / "notes").mkdir()
    files, chunk, pos, n = [], 51_200, 0, 0
    while pos < need:  # files of 1 MB cut from the text, repeated with a varying prefix to reach the size
        body = f"part {n}\n".encode() + text[(n * 1_000_003) % max(1, len(text) - 1_000_000):][:1_000_000]
        (root / "notes" / f"f{n:04d}.txt").write_bytes(body)
        files.append((f"f{n:04d}.txt", body))
        pos += len(body)
        n += 1
    kernel = open_db(root / "kora_kernel.db")
    with kernel:
        for i, (name, body) in enumerate(files, 1):
            kernel.execute("INSERT INTO documents(id, agency_id, root, path, size, mtime_ns, sha256, indexed_at)"
                           " VALUES (?, 'bench', 'notes', ?, ?, 0, '', '')", (i, name, len(body)))
            for seq, off in enumerate(range(0, len(body), chunk)):
                piece = body[off : off + chunk]
                kernel.execute("INSERT INTO chunks(agency_id, document_id, seq, byte_offset, byte_length, sha256)"
                               " VALUES ('bench', ?, ?, ?, ?, ?)", (i, seq, off, len(piece),
                                                                   hashlib.sha256(piece).hexdigest()))
    kernel.close()


def knn_latency(work: Path, passages: int, dims: int) -> dict[str, Any]:
    """Vector search at ``passages`` passages through VectorService.search (kernel rows written directly)."""
    from koradaemon import gcsettings
    from koradaemon.config import parse_config
    from koradaemon.vectors.heap import batch_mode, rest_mode
    from koradaemon.vectors.service import VectorService
    from koradaemon.vectors.worker import Step

    root = work / "knn"
    knn_corpus(root, passages)
    text = b"".join(p.read_bytes() for p in sorted((root / "texts").rglob("*.py")))
    cfg = parse_config(f"agencies: [{{agency_id: bench, roots: [notes]}}]\nvault: {{enabled: false}}\n"
                       f"vectors: {{enabled: true, dims: {dims}}}",
                       data_root=root)
    svc = VectorService(cfg, root / "kora_kernel.db", lambda a: False)
    conn = svc._load()
    svc.state = "ready"
    assert svc.embedder is not None
    step = Step(svc.embedder, root, 1536, 256)
    av = svc.agencies["bench"]
    t0 = time.perf_counter()
    batch_mode()  # as the service's loop does while catching up
    while step.run(av):
        pass
    rest_mode()
    embed_s = time.perf_counter() - t0
    words = text.decode("utf-8", "replace").split()
    gcsettings.settle()  # the collector as the daemon sets it once ready
    times, cpu = [], []
    for q in range(300):
        query = " ".join(words[(q * 7919) % (len(words) - 5) :][:4])
        t, c = time.perf_counter(), time.thread_time()
        svc.search("bench", query, 10)
        times.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
    conn.close()
    times.sort()
    cpu.sort()

    def ms(values: list[float], q: float) -> float:
        return round(1000 * values[min(len(values) - 1, int(len(values) * q))], 2)

    return {"passages": len(av.index), "embed_mb_s": round(av.counters["bytes"] / 1e6 / embed_s, 2),
            "embed_mb_cpu_s": round(av.counters["bytes"] / 1e6 / av.counters["cpu_s"], 2),
            "p50_ms": ms(times, 0.5), "p99_ms": ms(times, 0.99),
            "cpu_p50_ms": ms(cpu, 0.5), "cpu_p99_ms": ms(cpu, 0.99)}


def embedding_baseline(work: Path, dims: int, mb: int = 4) -> dict[str, float]:
    """Embedder.embed (first pass: empty word cache) against wordllama's own ``embed`` on the same
    passages, CPU seconds of this thread: the same-run baseline for the catch-up rate."""
    from koradaemon.vectors.embedder import Embedder
    from koradaemon.vectors.model import load_tokenizer, load_via_wordllama, load_weights, prepare_cache_dir
    from koradaemon.vectors.passages import split_passages

    src = fresh(work / "baseline")
    stdlib_corpus(src, mb << 20)
    passages = [p.data for f in sorted(src.rglob("*.py")) for off in range(0, f.stat().st_size, 51_200)
                for p in split_passages(f.read_bytes()[off : off + 51_200], off, 1536)]
    nbytes = sum(map(len, passages))
    files = prepare_cache_dir(work / "model")
    ours = Embedder(load_tokenizer(files), load_weights(files, dims), files.name)
    c = time.thread_time()
    for i in range(0, len(passages), 256):
        ours.embed(passages[i : i + 256])
    ours_s = time.thread_time() - c
    wl = load_via_wordllama(work / "model-wl")
    texts = [p.decode("utf-8", "replace") for p in passages]
    c = time.thread_time()
    for i in range(0, len(texts), 256):
        wl.embed(texts[i : i + 256], norm=True)  # type: ignore[attr-defined]
    theirs_s = time.thread_time() - c
    return {"mb": round(nbytes / 1e6, 1), "ours": round(nbytes / 1e6 / ours_s, 2),
            "wordllama": round(nbytes / 1e6 / theirs_s, 2)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--distractor-mb", type=int, default=8)
    ap.add_argument("--live-mb", type=int, default=8, help="MB moved in at once after the initial sync (0: none)")
    ap.add_argument("--rounds", type=int, default=1, help="off/on pairs of daemon runs, interleaved")
    ap.add_argument("--passages", type=int, default=100_000)
    ap.add_argument("--dims", type=int, default=256, choices=(64, 128, 256))
    ap.add_argument("--work", type=Path)
    args = ap.parse_args()
    problems = check_labels()
    if problems:
        print("\n".join(problems))
        return 1
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-vectors-"))
    print(f"load average at the start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    rounds: list[tuple[dict[str, Any], dict[str, Any]]] = []
    table: dict[str, dict[str, float]] = {}
    for r in range(args.rounds):  # off, on, off, on, ...: a drift in the machine's load hits both alike
        off, off_stats = run_daemon(work, args.distractor_mb, vectors=False, dims=args.dims, live_mb=args.live_mb)
        off.stop()
        on, on_stats = run_daemon(work, args.distractor_mb, vectors=True, dims=args.dims, live_mb=args.live_mb)
        try:
            if r == 0:
                table = recall(on)
        finally:
            on.stop()
        rounds.append((off_stats, on_stats))
        v = on_stats["vector_status"]
        sync = off_stats["keyword_s"] / on_stats["keyword_s"] if off_stats["keyword_s"] and on_stats["keyword_s"] else 0
        live = off_stats["live_s"] / on_stats["live_s"] if args.live_mb else 0
        live2 = off_stats["live2_s"] / on_stats["live2_s"] if args.live_mb else 0
        print(f"round {r + 1}: keyword initial sync off {off_stats['keyword_s']} s, on {on_stats['keyword_s']} s"
              f" (speed on/off {sync:.2f}); live burst of {off_stats.get('live_mb', 0)} MB"
              f" off {off_stats.get('live_s')} s,"
              f" on {on_stats.get('live_s')} s (speed on/off {live:.2f}, vectors {on_stats.get('live_vectors')});"
              f" after catch-up, {off_stats.get('live2_mb', 0)} MB off {off_stats.get('live2_s')} s,"
              f" on {on_stats.get('live2_s')} s (speed on/off {live2:.2f});"
              f" vector catch-up {v['mb_per_s']} MB/s ({v['mb_per_cpu_s']} MB per CPU-s), live agency"
              f" {on_stats.get('live_vector_status', {}).get('mb_per_s')} MB/s"
              f" ({on_stats.get('live_vector_status', {}).get('mb_per_cpu_s')} MB per CPU-s);"
              f" RSS +{on_stats['rss_mb'] - off_stats['rss_mb']:.1f} MB;"
              f" load {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    off_stats, on_stats = rounds[0]

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 2)

    print(f"dims: {args.dims}; load average now: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"corpus: {off_stats['bytes'] / 1e6:.1f} MB ({len(TOPICS)} labelled topical documents + stdlib sources)")
    print(f"keyword initial sync, speed on/off, median of {len(rounds)}: "
          f"{median([a['keyword_s'] / b['keyword_s'] for a, b in rounds])}  (goal >= 0.8)")
    if args.live_mb:
        print(f"keyword indexing of the live burst, speed on/off, median of {len(rounds)}: "
              f"{median([a['live_s'] / b['live_s'] for a, b in rounds])}  (goal >= 0.8); of the one after"
              f" the catch-up (vectors embed it meanwhile): {median([a['live2_s'] / b['live2_s'] for a, b in rounds])}")
    if args.live_mb:
        lv = [b["live_vector_status"] for _, b in rounds]
        print(f"vector catch-up of the live agency (its first burst, embedded after the load), median of"
              f" {len(rounds)}: {median([v['mb_per_s'] for v in lv])} MB/s, {median([v['mb_per_cpu_s'] for v in lv])}"
              " MB per CPU-second")
    print(f"vector catch-up (status; the initial backlog), median of {len(rounds)}: "
          f"{median([b['vector_status']['mb_per_s'] for _, b in rounds])} MB/s of text while embedding, "
          f"{median([b['vector_status']['mb_per_cpu_s'] for _, b in rounds])} MB per CPU-second (goal >= 10);"
          f" first round: {on_stats['catchup_after_keyword_s']} s after keyword idle, max lag seen"
          f" {on_stats['max_lag_mb']} MB, {on_stats['vector_status']['passages']} passages")
    rss_rounds = ", ".join(f"{b['rss_mb'] - a['rss_mb']:.1f}" for a, b in rounds)
    print(f"daemon RSS: vectors off {off_stats['rss_mb']} MB, on {on_stats['rss_mb']} MB, "
          f"increase {on_stats['rss_mb'] - off_stats['rss_mb']:.1f} MB  (goal <= 60); "
          f"highest seen while catching up {on_stats['peak_rss_mb']} MB; increase per round: {rss_rounds} MB")
    print("recall@10 (%)   exact-term   paraphrase")
    for mode, row in table.items():
        print(f"  {mode:8s}      {row['exact']:6.1f}       {row['paraphrase']:6.1f}")
    print(f"  hybrid - keyword: exact {table['hybrid']['exact'] - table['keyword']['exact']:+.1f} (goal >= -2), "
          f"paraphrase {table['hybrid']['paraphrase'] - table['keyword']['paraphrase']:+.1f} (goal > 0)")
    base = embedding_baseline(work, args.dims)
    print(f"same-run baseline, {base['mb']} MB of stdlib passages, first pass, one thread: Embedder.embed"
          f" {base['ours']} MB per CPU-s, wordllama's own embed {base['wordllama']} MB per CPU-s"
          f" ({base['ours'] / base['wordllama']:.1f}x)")
    if args.passages:
        k = knn_latency(work, args.passages, args.dims)
        print(f"vector top-10 at {k['passages']} passages: wall p50 {k['p50_ms']} ms, p99 {k['p99_ms']} ms;"
              f" CPU p50 {k['cpu_p50_ms']} ms, p99 {k['cpu_p99_ms']} ms (goal p99 <= 20)")
        print(f"embedding {k['embed_mb_s']} MB/s wall, {k['embed_mb_cpu_s']} MB per CPU-second (goal >= 10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
