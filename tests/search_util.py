"""Building real agency indexes quickly for the search tests (real store, real SQLite file)."""

from __future__ import annotations

import functools
import hashlib
import itertools
import random
from collections.abc import Iterable
from pathlib import Path

import apsw

from koradaemon.index.db import immediate, open_db
from koradaemon.index.fts import derive
from koradaemon.index.retrieval import FileTexts
from koradaemon.index.store import AgencyStore

VOCAB = [f"w{i}" for i in range(3000)]

# derive is a pure function of the text: a test that indexes the same texts twice (e.g. into two
# databases) computes each once
_derive = functools.lru_cache(maxsize=4096)(derive)


def data_root(conn: apsw.Connection) -> Path:
    """Where :func:`put_texts` writes the files: the database's folder."""
    return Path(conn.filename).parent


def store_of(conn: apsw.Connection, agency: str, roots: tuple[str, ...] = ("r",)) -> AgencyStore:
    """The agency's store, reading hit texts from the files :func:`put_texts` wrote."""
    return AgencyStore(conn, agency, FileTexts(data_root(conn), roots))


def put_texts(conn: apsw.Connection, agency: str, texts: Iterable[tuple[str, str]], root: str = "r") -> int:
    """Write (path, text) pairs as files below the database's folder and index each as a one-chunk
    document, all in one transaction; returns the count."""
    store = AgencyStore(conn, agency)
    folder = data_root(conn) / root
    n = 0
    with immediate(conn):
        for path, text in texts:
            raw = text.encode()
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_bytes(raw)
            digest = hashlib.sha256(raw).hexdigest()
            store.put_document(root, path, len(raw), 0, digest, [(0, len(raw), digest, text, 1, _derive(text))])
            n += 1
    return n


def zipf_texts(n: int, seed: int, words: int = 60, prefix: str = "d") -> list[tuple[str, str]]:
    """Documents of Zipf-distributed words w0 (most common) .. w2999, plus a unique word each."""
    rnd = random.Random(seed)
    # the cumulative weights once (choices(weights=...) sums them again on every call; same draws)
    cum = list(itertools.accumulate(1.0 / (i + 1) for i in range(len(VOCAB))))
    out = []
    for i in range(n):
        body = " ".join(rnd.choices(VOCAB, cum_weights=cum, k=words))
        out.append((f"{prefix}{i}.txt", f"{body}\nuniq{prefix}{i}\n"))
    return out


def new_db(tmp: Path) -> apsw.Connection:
    return open_db(tmp / "k.db")
