"""Cost of the safe open (koradaemon.fsopen) per file, beside a plain ``open()`` in the same run.

Run: .venv/bin/python bench/bench_fsopen.py [--files N] [--depth D] [--size BYTES]
Each round opens, reads and closes every file of a tree once: first with ``open(path, "rb")``
(the baseline, which follows links and blocks on FIFOs), then with ``open_regular_file(root, rel)``
(component by component from the root's descriptor, O_NOFOLLOW, non-blocking, fstat).
The ratio safe/plain is the figure; the best of several rounds of each is kept.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from koradaemon.fsopen import open_regular_file


def make_tree(root: Path, files: int, depth: int, size: int) -> list[str]:
    rels = []
    body = (b"lorem ipsum dolor sit amet " * (size // 27 + 1))[:size]
    for i in range(files):
        parts = [f"d{(i >> (3 * k)) % 8}" for k in range(depth)]
        rel = "/".join([*parts, f"f{i}.md"])
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        rels.append(rel)
    return rels


def plain(root: Path, rels: list[str]) -> float:
    t = time.perf_counter()
    for rel in rels:
        with open(root / rel, "rb") as fh:
            fh.read()
    return time.perf_counter() - t


def safe(root: Path, rels: list[str]) -> float:
    t = time.perf_counter()
    for rel in rels:
        with open_regular_file(root, rel) as fh:
            fh.read()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rels = make_tree(root, args.files, args.depth, args.size)
        plain(root, rels)  # warm the page and dentry caches
        best_plain = min(plain(root, rels) for _ in range(args.rounds))
        best_safe = min(safe(root, rels) for _ in range(args.rounds))
    per_plain = best_plain / len(rels) * 1e6
    per_safe = best_safe / len(rels) * 1e6
    print(f"files={len(rels)} depth={args.depth} size={args.size}")
    print(f"plain open():        {per_plain:7.1f} us/file (baseline)")
    print(f"open_regular_file(): {per_safe:7.1f} us/file  ratio {best_safe / best_plain:.2f}x")


if __name__ == "__main__":
    main()
