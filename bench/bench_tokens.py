"""What the derived-token column costs: index size and insert time, with and without it.

Run: .venv/bin/python bench/bench_tokens.py [--mib 30]

The stdlib's .py text (code: camelCase, C-style operators, some non-ASCII) is chunked like the
daemon does and inserted into two FTS5 tables of the same shape, in the same run: one with
``extra`` filled by ``derive.derive`` (the daemon), one with ``extra`` empty (the baseline).
"""

from __future__ import annotations

import argparse
import sysconfig
import tempfile
import time
from pathlib import Path

import apsw

from koradaemon.index.chunking import iter_spans
from koradaemon.index.derive import derive
from koradaemon.index.fts import TOKENIZER


def chunks(limit: int) -> list[str]:
    out: list[str] = []
    total = 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if "site-packages" in path.parts or total >= limit:
            continue
        data = path.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        out.extend(data[s.offset : s.end].decode() for s in iter_spans(data, len(data)))
        total += len(data)
    return out


def build(db: Path, texts: list[str], with_extra: bool) -> tuple[float, int]:
    conn = apsw.Connection(str(db))
    conn.execute(f"CREATE VIRTUAL TABLE t USING fts5(body, extra, line UNINDEXED, tokenize = '{TOKENIZER}')")
    t0 = time.perf_counter()
    with conn:
        conn.executemany("INSERT INTO t(rowid, body, extra, line) VALUES (?, ?, ?, 1)",
                         ((i, text, derive(text) if with_extra else "") for i, text in enumerate(texts, 1)))
    dt = time.perf_counter() - t0
    conn.execute("INSERT INTO t(t) VALUES ('optimize')")
    (index_bytes,) = conn.execute("SELECT sum(length(block)) FROM t_data").fetchone()
    conn.close()
    return dt, int(index_bytes)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=30)
    args = ap.parse_args()
    texts = chunks(args.mib << 20)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    t0 = time.perf_counter()
    n_extra = sum(1 for t in texts if derive(t))
    derive_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        base_s, base_b = build(Path(tmp) / "base.db", texts, False)
        kora_s, kora_b = build(Path(tmp) / "kora.db", texts, True)
    print(f"{len(texts)} chunks, {mb:.1f} MB of text; {n_extra} chunks get derived tokens")
    print(f"derive() alone: {derive_s:.2f} s ({mb / derive_s:.0f} MB/s)")
    print(f"insert: {kora_s:.2f} s with derived tokens vs {base_s:.2f} s without ({kora_s / base_s:.2f}x)")
    print(f"FTS index: {kora_b / 1e6:.1f} MB vs {base_b / 1e6:.1f} MB ({kora_b / base_b:.2f}x);"
          f" text itself {mb:.1f} MB")


if __name__ == "__main__":
    main()
