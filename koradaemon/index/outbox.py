"""The audit outbox (table ``audit_outbox``): audit records waiting for the KBL-1 log.

The writer puts a change's record here in the change's own transaction, so a committed
change always has its record; the acknowledger appends the rows to the log and deletes them.
Each appended record carries its row's id as ``data.outbox_id``: after a crash between the
append and the delete, the rows already in the log are recognised and not appended again.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import apsw

from .db import immediate

OUTBOX_KEY = "outbox_id"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    agency_id: str
    type: str
    data: dict[str, Any]

    def record_data(self) -> dict[str, Any]:
        """The audit record's data: the change, plus the row id that makes the append idempotent."""
        return {**self.data, OUTBOX_KEY: self.id}


encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def put(conn: apsw.Connection, rows: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
    """Add (agency_id, type, data) records; call inside the transaction of the change they describe."""
    conn.executemany(
        "INSERT INTO audit_outbox(agency_id, type, data) VALUES (?, ?, ?)",
        ((agency_id, rtype, encode(data)) for agency_id, rtype, data in rows),
    )


def pending(conn: apsw.Connection, *, limit: int, skip: Collection[str] = (), after: int = 0) -> list[OutboxRow]:
    """The oldest rows (by id) past ``after``, leaving out the agencies in ``skip``."""
    skip = sorted(skip)
    not_in = f" AND agency_id NOT IN ({','.join('?' * len(skip))})" if skip else ""
    rows = conn.execute(
        f"SELECT id, agency_id, type, data FROM audit_outbox WHERE id > ?{not_in} ORDER BY id LIMIT ?",
        (after, *skip, limit),
    ).fetchall()
    return [OutboxRow(int(str(r[0])), str(r[1]), str(r[2]), json.loads(str(r[3]))) for r in rows]


def delete(conn: apsw.Connection, ids: Iterable[int]) -> int:
    """Remove drained rows (their records are durable in the log); returns how many went."""
    id_list = sorted(ids)
    if not id_list:
        return 0
    before = conn.total_changes()
    with immediate(conn):
        conn.executemany("DELETE FROM audit_outbox WHERE id = ?", ((i,) for i in id_list))
    return conn.total_changes() - before


def count(conn: apsw.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM audit_outbox").fetchone()
    return int(row[0]) if row else 0
