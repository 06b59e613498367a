"""What an agency has indexed: its files (size, chunks, indexed time) and the files it skipped, with why.

Read-only queries on any connection, always filtered by the agency.
"""

from __future__ import annotations

from typing import Any

import apsw

from ..errors import UsageError
from ..paths import check_agency_id


def list_files(conn: apsw.Connection, agency_id: str, *, skipped: bool, limit: int, offset: int) -> dict[str, Any]:
    """One page of the agency's indexed (or, with ``skipped``, skipped) files, ordered by root and path."""
    check_agency_id(agency_id)
    cond = "skipped IS NOT NULL" if skipped else "skipped IS NULL"
    row = conn.execute(f"SELECT count(*) FROM documents WHERE agency_id = ? AND {cond}", (agency_id,)).fetchone()
    total = row[0] if row else 0
    rows = conn.execute(
        "SELECT d.root, d.path, d.size, d.sha256, d.skipped, d.indexed_at,"
        " (SELECT count(*) FROM chunks c WHERE c.document_id = d.id AND c.agency_id = d.agency_id)"
        f" FROM documents d WHERE d.agency_id = ? AND {cond} ORDER BY d.root, d.path LIMIT ? OFFSET ?",
        (agency_id, limit, offset),
    ).fetchall()
    files = [_row(r) for r in rows]
    return {"total": int(total), "offset": offset, "files": files, "skipped": skipped}


def file_entry(conn: apsw.Connection, agency_id: str, root: str, path: str) -> dict[str, Any]:
    """One file's row with its chunk references (empty dict when the file is not in the index)."""
    check_agency_id(agency_id)
    row = conn.execute(
        "SELECT d.root, d.path, d.size, d.sha256, d.skipped, d.indexed_at, d.id FROM documents d"
        " WHERE d.agency_id = ? AND d.root = ? AND d.path = ?", (agency_id, root, path)).fetchone()
    if row is None:
        return {}
    chunks = conn.execute(
        "SELECT seq, byte_offset, byte_length, sha256 FROM chunks WHERE document_id = ? AND agency_id = ?"
        " ORDER BY seq", (row[6], agency_id)).fetchall()
    out = _row((*row[:6], len(chunks)))
    out["chunk_refs"] = [{"seq": s, "offset": o, "length": n, "sha256": h} for s, o, n, h in chunks]
    return out


def _row(r: tuple[Any, ...]) -> dict[str, Any]:
    root, path, size, sha, skipped, indexed_at, chunks = r
    return {"root": _text(root), "path": _text(path), "size": size, "sha256": sha, "skipped": skipped,
            "indexed_at": indexed_at, "chunks": chunks}


def _text(value: object) -> str:
    """Paths may be stored as bytes (non-UTF-8 names): hand them out as str with surrogate escapes."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def split_root(location: str, roots: tuple[str, ...]) -> tuple[str, str]:
    """``ROOT/PATH`` → (root, path) for one of ``roots``; a bare path is taken under the only root."""
    clean = location.strip("/")
    for root in sorted(roots, key=len, reverse=True):
        if clean.startswith(root.rstrip("/") + "/"):
            return root, clean[len(root.rstrip("/")) + 1:]
    if len(roots) == 1:
        return roots[0], clean
    raise UsageError(f"{location!r} is not under a root of this agency", hint=f"roots: {', '.join(roots)}")
