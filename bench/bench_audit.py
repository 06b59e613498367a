"""Audit log (KBL-1) throughput: group-commit appends and full verification, beside raw ceilings.

Run: .venv/bin/python bench/bench_audit.py [--records N] [--threads T]
Each figure is printed beside a ceiling measured in the same run on the same
records: a plain loop of canonical ``json.dumps`` + ``hashlib.sha256`` (append)
and of ``json.loads`` + ``json.dumps`` + ``hashlib.sha256`` per line (verify).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from koradaemon.audit.manager import AuditManager
from koradaemon.audit.segments import list_segments, segment_path
from koradaemon.audit.verify import verify_log

DUMPS = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def sample(i: int) -> dict[str, Any]:
    return {"path": f"notes/project-{i % 97}/file-{i}.md", "sha256": hashlib.sha256(str(i).encode()).hexdigest(),
            "bytes": 1000 + i, "chunks": 1 + i % 7}


def raw_append_ceiling(datas: list[dict[str, Any]]) -> float:
    t = time.perf_counter()
    prev = "0" * 64
    for i, d in enumerate(datas):
        rec = {"v": 1, "seq": i, "ts": "2026-01-01T00:00:00.000000Z", "agency_id": "bench", "type": "index",
               "data": d, "prev": prev}
        prev = hashlib.sha256(DUMPS(rec).encode()).hexdigest()
    return len(datas) / (time.perf_counter() - t)


def raw_verify_ceiling(agency_dir: Path) -> tuple[float, int]:
    t = time.perf_counter()
    n = 0
    for number in list_segments(agency_dir):
        with open(segment_path(agency_dir, number), "rb") as f:
            for line in f:
                obj = json.loads(line)
                DUMPS(obj).encode() == line[:-1]  # noqa: B015 - the work is the point
                hashlib.sha256(line).hexdigest()
                n += 1
    return n / (time.perf_counter() - t), n


def bench_threads(m: AuditManager, datas: list[dict[str, Any]], threads: int) -> float:
    per = len(datas) // threads

    def work(k: int) -> None:
        for d in datas[k * per : (k + 1) * per]:
            m.append("threads", "index", d)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    t = time.perf_counter()
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    return per * threads / (time.perf_counter() - t)


def thread_handoff_ceiling(total: int, threads: int) -> float:
    """Python's own limit for blocking callers: T threads handing one lock each to a server thread, no I/O."""
    queue: list[threading.Lock] = []
    cond = threading.Condition()
    done = threading.Event()

    def server() -> None:
        while True:
            with cond:
                while not queue and not done.is_set():
                    cond.wait()
                if not queue:
                    return
                batch = queue[:]
                queue.clear()
            for lock in batch:
                lock.release()

    def client(n: int) -> None:
        for _ in range(n):
            lock = threading.Lock()
            lock.acquire()
            with cond:
                queue.append(lock)
                cond.notify()
            lock.acquire()

    srv = threading.Thread(target=server)
    srv.start()
    per = total // threads
    ts = [threading.Thread(target=client, args=(per,)) for _ in range(threads)]
    t = time.perf_counter()
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    rate = per * threads / (time.perf_counter() - t)
    with cond:
        done.set()
        cond.notify()
    srv.join()
    return rate


def bench_bulk(m: AuditManager, datas: list[dict[str, Any]]) -> float:
    t = time.perf_counter()
    last = None
    for d in datas:
        last = m.append_nowait("bulk", "index", d)
    assert last is not None
    last.result()
    return len(datas) / (time.perf_counter() - t)


def bench_many(m: AuditManager, datas: list[dict[str, Any]], chunk: int = 256) -> float:
    t = time.perf_counter()
    for i in range(0, len(datas), chunk):
        m.append_many("many", [("index", d) for d in datas[i : i + chunk]])
    return len(datas) / (time.perf_counter() - t)


def run_once(datas: list[dict[str, Any]], threads: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        m = AuditManager(audit_root=root / "audit", db_path=root / "k.db", agency_ids=["threads", "bulk", "many"])
        m.open_all()
        out = {"ceiling": raw_append_ceiling(datas), "bulk": bench_bulk(m, datas), "many": bench_many(m, datas),
               "threads": bench_threads(m, datas, threads), "handoff": thread_handoff_ceiling(len(datas) // 2, threads)}
        m.close()
        out["ceiling_v"], n = raw_verify_ceiling(root / "audit" / "bulk")
        t = time.perf_counter()
        result = verify_log(root / "audit" / "bulk", "bulk")
        out["verify"] = result.count / (time.perf_counter() - t)
        assert result.ok and result.count == n, result
        out["n"] = n
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--threads", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs for every figure")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    datas = [sample(i) for i in range(args.records)]
    runs = [run_once(datas, args.threads) for _ in range(args.repeat)]
    best = {k: max(r[k] for r in runs) for k in runs[0]}
    c, cv, t = best["ceiling"], best["ceiling_v"], args.threads
    print(f"best of {args.repeat} runs, {args.records:,} records")
    print(f"raw ceiling  dumps+sha256 per record        {c:>10,.0f} rec/s")
    for key, label in (("bulk", "append_nowait, 1 producer    "), ("many", "append_many, 256 per call    ")):
        print(f"append {key:<5} {label}{best[key]:>10,.0f} rec/s  ({best[key] / c:.2f} x ceiling)")
    print(f"append sync  {t} threads x append()          {best['threads']:>10,.0f} rec/s  "
          f"({best['threads'] / c:.2f} x ceiling)")
    print(f"raw ceiling  {t} threads lock handoff, no I/O {best['handoff']:>9,.0f} rec/s  "
          f"(sync appenders reach {best['threads'] / best['handoff']:.2f} x this)")
    print(f"raw ceiling  loads+dumps+sha256 per line    {cv:>10,.0f} rec/s")
    print(f"verify_log   full chain, {int(best['n']):,} records  {best['verify']:>10,.0f} rec/s  "
          f"({best['verify'] / cv:.2f} x ceiling)")


if __name__ == "__main__":
    main()
