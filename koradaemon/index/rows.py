"""Row shapes shared by the preparing side (prepare, the prep worker process) and the store.

Kept apart from :mod:`.store` so the prep worker process imports no SQLite code.
"""

from __future__ import annotations

from dataclasses import dataclass

# byte_offset, byte_length, sha256, text, start line (1-based), derived tokens (fts.derive)
ChunkRow = tuple[int, int, str, str, int, str]


@dataclass(frozen=True, slots=True)
class DocRow:
    id: int
    root: str
    path: str
    size: int
    mtime_ns: int
    sha256: str
    skipped: str | None
