"""The index's size on disk: each database file and its write-ahead log, by ``stat`` alone."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def index_size(files: Mapping[str, Path]) -> dict[str, int]:
    """``{name: bytes, name_wal: bytes, ..., total: bytes}``; a file that is absent counts 0."""
    out: dict[str, int] = {}
    for name, base in files.items():
        for suffix, key in (("", name), ("-wal", f"{name}_wal")):
            try:
                out[key] = os.stat(f"{base}{suffix}").st_size
            except OSError:
                out[key] = 0
    out["total"] = sum(out.values())
    return out


def index_files(database: Path, vectors: Path | None) -> dict[str, Path]:
    """The files ``index_size`` measures: the index database, and the vectors database when enabled."""
    return {"database": database, **({"vectors": vectors} if vectors is not None else {})}
