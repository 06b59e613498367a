"""Reading an agency's KBL-1 log forward from a seq, never past its durable head."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..audit.segments import list_segments, segment_path


@dataclass(frozen=True)
class Head:
    seq: int
    segment: int
    offset: int


@dataclass(frozen=True)
class Line:
    seq: int
    hash: str
    raw: bytes  # the record's line as written, without its newline


class AuditTail:
    """Yields records with seq >= ``next_seq`` in order, up to the durable head it is given."""

    def __init__(self, agency_dir: Path, next_seq: int) -> None:
        self.dir = agency_dir
        self.next_seq = next_seq
        self._segment: int | None = None
        self._offset = 0

    @property
    def segment(self) -> int:
        return self._segment or 0

    def read(self, head: Head | None, limit: int = 256) -> list[Line]:
        if head is None or head.seq < self.next_seq:
            return []
        if self._segment is None:
            segments = list_segments(self.dir)
            if not segments:
                return []
            self._segment, self._offset = segments[0], 0
        out: list[Line] = []
        while len(out) < limit:
            end = head.offset if self._segment == head.segment else None
            if self._read_segment(end, limit - len(out), out):  # bytes consumed: read on
                continue
            if self._segment >= head.segment:
                break
            later = [s for s in list_segments(self.dir) if s > self._segment]
            if not later:
                break
            self._segment, self._offset = later[0], 0
        return out

    def _read_segment(self, end: int | None, limit: int, out: list[Line]) -> int:
        assert self._segment is not None
        path = segment_path(self.dir, self._segment)
        with open(path, "rb") as fh:
            fh.seek(self._offset)
            want = -1 if end is None else max(0, end - self._offset)
            data = fh.read(want) if want else b""
        n = 0
        pos = 0
        while n < limit:
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            raw = data[pos:nl]
            pos = nl + 1
            seq, digest = _seq_and_hash(raw)
            if seq >= self.next_seq:
                out.append(Line(seq, digest, raw))
                self.next_seq = seq + 1
                n += 1
        self._offset += pos
        return pos


def _seq_and_hash(raw: bytes) -> tuple[int, str]:
    """A canonical KBL-1 line's seq and hash without parsing it all: the top-level ``hash`` and
    ``seq`` members are the last occurrences of their keys (only prev, ts, type and v follow them,
    none holding a quote). Falls back to parsing a line that does not look canonical."""
    h = raw.rfind(b',"hash":"')
    s = raw.rfind(b',"seq":')
    end = raw.find(b",", s + 7) if s >= 0 else -1
    if h >= 0 and end > 0 and raw[h + 73:h + 74] == b'"':
        try:
            return int(raw[s + 7:end]), raw[h + 9:h + 73].decode("ascii")
        except ValueError:
            pass
    rec = json.loads(raw)
    return int(rec["seq"]), str(rec["hash"])
