"""Benchmark corpora: the Python standard library's sources, or generated text."""

from __future__ import annotations

import random
import shutil
import sysconfig
from pathlib import Path

WORDS = (  # noqa: SIM905
    "agent memory index audit vault snapshot chunk search token agency daemon kernel watch file"
    " journal record signal process restart health probe latency throughput session context state"
).split()


def stdlib_corpus(dest: Path, limit_bytes: int = 60 << 20) -> tuple[int, int]:
    """Copy the stdlib's .py files into ``dest`` (up to ``limit_bytes``); returns (files, bytes)."""
    src = Path(sysconfig.get_paths()["stdlib"])
    files = total = 0
    for path in sorted(src.rglob("*.py")):
        if "site-packages" in path.parts or total >= limit_bytes:
            continue
        try:
            data = path.read_bytes()
            data.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        out = dest / path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        files += 1
        total += len(data)
    return files, total


def vocabulary(size: int = 20_000, seed: int = 11) -> tuple[list[str], list[float]]:
    """Pseudo-words with Zipf-like frequencies (word i has weight 1/(i+1)), as in natural text."""
    rnd = random.Random(seed)
    letters = "etaoinshrdlucmfwypvbgkjqxz"
    words = list(WORDS)
    seen = set(words)
    while len(words) < size:
        w = "".join(rnd.choice(letters[: 8 + rnd.randrange(18)]) for _ in range(rnd.randrange(3, 10)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    cum: list[float] = []
    total = 0.0
    for i in range(size):
        total += 1.0 / (i + 1)
        cum.append(total)
    return words, cum


def generated_corpus(dest: Path, files: int, size: int, seed: int = 7) -> tuple[int, int]:
    words, cum = vocabulary()
    rnd = random.Random(seed)
    total = 0
    for i in range(files):
        d = dest / f"d{i % 100:02d}"
        d.mkdir(parents=True, exist_ok=True)
        picked = rnd.choices(words, cum_weights=cum, k=max(1, size // 7))
        lines = [" ".join(picked[j : j + 12]) for j in range(0, len(picked), 12)]
        text = "\n".join(lines) + f"\nunique{i}\n"
        (d / f"f{i}.txt").write_text(text)
        total += len(text)
    return files, total


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
