"""Cost of the safe open (koradaemon.fsopen) per file, beside a plain ``open()`` in the same run.

Run: .venv/bin/python bench/bench_fsopen.py [--files N] [--depth D] [--size BYTES]
Each round opens, reads and closes every file of a tree once: with ``open(path, "rb")`` (the
baseline, which follows links and blocks on FIFOs), then with ``open_regular_file(root, rel)``
through ``openat2`` (Linux >= 5.6) and through the component-by-component walk used elsewhere.
The ratios to the baseline are the figures; rounds are interleaved, the best of each is kept.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from koradaemon import fsopen
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
        fast = fsopen._openat2
        times: dict[str, list[float]] = {"plain": [], "openat2": [], "walk": []}
        for _ in range(args.rounds):  # interleaved, so load changes hit all three alike
            times["plain"].append(plain(root, rels))
            if fast is not None:
                times["openat2"].append(safe(root, rels))
            fsopen._openat2 = None
            try:
                times["walk"].append(safe(root, rels))
            finally:
                fsopen._openat2 = fast
    base = min(times["plain"])
    print(f"files={len(rels)} depth={args.depth} size={args.size} rounds={args.rounds} (best of each)")
    print(f"plain open():                      {base / len(rels) * 1e6:7.1f} us/file (baseline)")
    for name, label in (("openat2", "open_regular_file() via openat2:"), ("walk", "open_regular_file(), walk:     ")):
        if times[name]:
            best = min(times[name])
            print(f"{label}   {best / len(rels) * 1e6:7.1f} us/file  ratio {best / base:.2f}x")


if __name__ == "__main__":
    main()
