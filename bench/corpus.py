"""Benchmark corpora: the Python standard library's sources, or generated text."""

from __future__ import annotations

import itertools
import random
import shutil
import sysconfig
from pathlib import Path

WORDS = (  # noqa: SIM905
    "agent memory index audit vault snapshot chunk search token agency daemon kernel watch file"
    " journal record signal process restart health probe latency throughput session context state"
).split()


def stdlib_corpus(dest: Path, limit_bytes: int = 60 << 20, skip_bytes: int = 0) -> tuple[int, int]:
    """Copy the stdlib's .py files into ``dest`` (up to ``limit_bytes``), after the first
    ``skip_bytes`` of them (in the same order); returns (files, bytes)."""
    src = Path(sysconfig.get_paths()["stdlib"])
    seen = files = total = 0
    for path in sorted(src.rglob("*.py")):
        if "site-packages" in path.parts or total >= limit_bytes:
            continue
        try:
            data = path.read_bytes()
            data.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        seen += len(data)
        if skip_bytes and seen <= skip_bytes:
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


def make_corpus(kind: str, dest: Path, files: int, size: int) -> tuple[int, int]:
    """The benches' ``--corpus`` choice: ``stdlib`` (the standard library's sources) or
    ``generated`` (``files`` files of ``size`` bytes); (files, bytes) written to ``dest``."""
    return stdlib_corpus(dest) if kind == "stdlib" else generated_corpus(dest, files, size)


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def stdlib_pieces(dest: Path, pieces: int, piece_bytes: int = 1000) -> tuple[int, int]:
    """``pieces`` files of about ``piece_bytes`` each, cut at line ends from the stdlib's .py text.

    Real words with their real document frequencies; once the stdlib is used up it is cut
    again from a shifted start, so any number of files can be made.
    """
    src = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(src.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            texts.append(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
    blob = "\n".join(texts)
    made = total = 0
    shift = 0
    while made < pieces:
        pos = shift
        while pos < len(blob) and made < pieces:
            end = blob.find("\n", pos + piece_bytes)
            end = len(blob) if end < 0 else end + 1
            d = dest / f"p{made // 1000:04d}"
            if made % 1000 == 0:
                d.mkdir(parents=True, exist_ok=True)
            (d / f"{made}.txt").write_text(blob[pos:end])
            total += end - pos
            made += 1
            pos = end
        shift += piece_bytes // 3 + 17
    return made, total


def query_classes(conn: object, table: str, rnd: random.Random, per_class: int,
                  data_root: Path) -> dict[str, list[str]]:
    """Typed queries per class, with words picked from the index by document frequency (fts5vocab).

    rare: in 2-20 chunks; mid: in 0.3-3 % of chunks; common: in more than half of them;
    prefix: the first 4 letters of a mid word; phrase: two adjacent common words;
    and: a common word and a mid word. Phrases come from 500 random chunks, read from their files
    below ``data_root`` (the full-text tables keep no text).
    """
    import re

    import apsw

    assert isinstance(conn, apsw.Connection)
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.vocab USING fts5vocab(main, '{table}', 'row')")
    (n,) = conn.execute(f'SELECT count(*) FROM "{table}_docsize"').fetchone()
    df = {t: d for t, d in conn.execute("SELECT term, doc FROM temp.vocab") if re.fullmatch(r"[a-z]{3,}", t)}
    rare = [t for t, d in df.items() if 2 <= d <= 20]
    mid = [t for t, d in df.items() if 0.003 * n <= d <= 0.03 * n]
    common = [t for t, d in df.items() if d > 0.5 * n]
    if not common:  # small corpora: the most frequent words
        common = sorted(df, key=df.__getitem__)[-10:]
    pairs: dict[tuple[str, str], int] = {}
    common_set = set(t for t, d in df.items() if d > 0.1 * n) or set(common)
    rows = conn.execute("SELECT d.root, d.path, c.byte_offset, c.byte_length FROM chunks c"
                        " JOIN documents d ON d.id = c.document_id WHERE c.id IN"
                        f' (SELECT rowid FROM "{table}" ORDER BY random() LIMIT 500)').fetchall()
    for root, path, offset, length in rows:
        try:
            with open(data_root / root / path, "rb") as fh:
                fh.seek(offset)
                body = fh.read(length).decode("utf-8", "replace")
        except OSError:
            continue
        toks = re.findall(r"[a-z]+", body.lower())
        for a, b in itertools.pairwise(toks):
            if a in common_set and b in common_set and a != b:
                pairs[(a, b)] = pairs.get((a, b), 0) + 1
    top_pairs = sorted(pairs, key=pairs.__getitem__)[-50:] or [(common[0], common[-1])]
    prefixes = sorted({w[:4] for w in mid if len(w) > 5})
    return {
        "rare": [rnd.choice(rare) for _ in range(per_class)],
        "mid": [rnd.choice(mid) for _ in range(per_class)],
        "very common": [rnd.choice(common) for _ in range(per_class)],
        "prefix": [rnd.choice(prefixes) + "*" for _ in range(per_class)],
        "phrase": ['"{} {}"'.format(*rnd.choice(top_pairs)) for _ in range(per_class)],
        "two-term AND": [f"{rnd.choice(common)} {rnd.choice(mid)}" for _ in range(per_class)],
    }
