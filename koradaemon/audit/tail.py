"""Reading a log backwards from its head: which outbox rows are already in it.

The acknowledger appends each outbox row as one record whose data carries ``outbox_id``
and deletes the row afterwards. A crash between the two leaves rows whose records are
in the log; this scan finds them (newest first, stopping at the first older row id).
"""

from __future__ import annotations

import json
from pathlib import Path

from .segments import list_segments, segment_path


def appended_ids(agency_dir: Path, key: str, min_id: int) -> set[int]:
    """Values of ``data[key]`` that are ``>= min_id`` in the log's tail.

    Outbox ids grow with the log, so the scan stops at the first record (from the head
    backwards) whose id is below ``min_id``; a log without such a record is read whole.
    Call it on a verified log (after opening): lines that do not parse are skipped.
    """
    found: set[int] = set()
    for number in reversed(list_segments(agency_dir)):
        with open(segment_path(agency_dir, number), "rb") as fh:
            lines = fh.read().split(b"\n")
        for line in reversed(lines):
            if key.encode() not in line:
                continue
            try:
                data = json.loads(line).get("data", {})
            except ValueError:
                continue
            value = data.get(key) if isinstance(data, dict) else None
            if not isinstance(value, int):
                continue
            if value < min_id:
                return found
            found.add(value)
    return found
