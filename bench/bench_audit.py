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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--threads", type=int, default=64)
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    datas = [sample(i) for i in range(args.records)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        m = AuditManager(audit_root=root / "audit", db_path=root / "k.db", agency_ids=["threads", "bulk", "many"])
        m.open_all()
        ceiling = raw_append_ceiling(datas)
        rate_bulk = bench_bulk(m, datas)
        rate_many = bench_many(m, datas)
        rate_threads = bench_threads(m, datas, args.threads)
        batches = m.heads()
        m.close()
        ceiling_v, n = raw_verify_ceiling(root / "audit" / "bulk")
        t = time.perf_counter()
        result = verify_log(root / "audit" / "bulk", "bulk")
        rate_v = result.count / (time.perf_counter() - t)
        assert result.ok and result.count == n, result
    print(f"raw ceiling  dumps+sha256 per record      {ceiling:>10,.0f} rec/s")
    print(f"append bulk  append_nowait, 1 producer     {rate_bulk:>10,.0f} rec/s  ({rate_bulk / ceiling:.2f} x ceiling)"
          f"  batches={batches['bulk'] and batches['bulk']['batches']}")
    print(f"append many  append_many, 256 per call     {rate_many:>10,.0f} rec/s  ({rate_many / ceiling:.2f} x ceiling)"
          f"  batches={batches['many'] and batches['many']['batches']}")
    print(f"append sync  {args.threads} threads x append()      {rate_threads:>10,.0f} rec/s  "
          f"({rate_threads / ceiling:.2f} x ceiling)  batches={batches['threads'] and batches['threads']['batches']}")
    print(f"raw ceiling  loads+dumps+sha256 per line  {ceiling_v:>10,.0f} rec/s")
    print(f"verify_log   full chain, {n:,} records    {rate_v:>10,.0f} rec/s  ({rate_v / ceiling_v:.2f} x ceiling)")


if __name__ == "__main__":
    main()
