"""Every kind of tampering with a KBL-1 log is rejected by full verification (with the anchor)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from koradaemon.audit.anchor import Anchor, AnchorStore
from koradaemon.audit.canonical import canonical_bytes, parse_canonical
from koradaemon.audit.fastline import fast_fields, line_head
from koradaemon.audit.record import record_hash
from koradaemon.audit.segments import list_segments, segment_path
from koradaemon.audit.verify import verify_log
from koradaemon.audit.writer import AuditLog
from koradaemon.errors import DataError

Segments = dict[int, list[bytes]]


def make_log(tmp_path: Path, records: int, segment_max_bytes: int = 1 << 20) -> tuple[Path, Anchor]:
    anchors = AnchorStore(tmp_path / "kora_kernel.db")
    alog = AuditLog(tmp_path / "a", "a", anchors, segment_max_bytes=segment_max_bytes, group_commit_records=2)
    alog.open()
    for i in range(records):
        alog.append("index", {"path": f"f{i}.md", "n": i, "tags": ["x", i], "ok": True})
    alog.close()
    head = anchors.load("a")
    anchors.close()
    assert head is not None
    return tmp_path / "a", head


def read(agency_dir: Path) -> Segments:
    return {n: segment_path(agency_dir, n).read_bytes().splitlines() for n in list_segments(agency_dir)}


def write(agency_dir: Path, segs: Segments) -> None:
    for n in list_segments(agency_dir):
        segment_path(agency_dir, n).unlink()
    for n, lines in segs.items():
        segment_path(agency_dir, n).write_bytes(b"".join(x + b"\n" for x in lines))


def rechain(segs: Segments, edit: Callable[[int, dict[str, Any]], bytes | None], start_seq: int) -> None:
    """Apply ``edit`` to the record with ``start_seq`` and re-hash every later record honestly."""
    prev = None
    for n in sorted(segs):
        for i, line in enumerate(segs[n]):
            rec = json.loads(line)
            if rec["seq"] < start_seq:
                continue
            if prev is not None:
                rec["prev"] = prev
            custom = edit(rec["seq"], rec) if rec["seq"] == start_seq else None
            if custom is None:
                rec["hash"] = record_hash(rec)
                custom = canonical_bytes(rec)
            else:
                body = custom.replace(b',"hash":"HASH"', b"")
                rec["hash"] = hashlib.sha256(body).hexdigest()
                custom = custom.replace(b"HASH", rec["hash"].encode())
            segs[n][i] = custom
            prev = rec["hash"]


def rejected(agency_dir: Path, head: Anchor, not_because: str = "\0") -> int | None:
    result = verify_log(agency_dir, "a", anchor=head)
    assert not result.ok, result
    assert result.reason and not_because not in result.reason, result.reason
    return result.first_bad_seq


def test_a_clean_log_verifies(tmp_path: Path) -> None:
    agency_dir, head = make_log(tmp_path, 6, segment_max_bytes=700)
    result = verify_log(agency_dir, "a", anchor=head)
    assert result.ok and result.count == head.seq + 1 and len(list_segments(agency_dir)) > 2


def test_every_single_bit_flip_is_detected(tmp_path: Path) -> None:
    agency_dir, head = make_log(tmp_path, 3)
    seg = segment_path(agency_dir, 1)
    original = seg.read_bytes()
    assert len(original) > 800
    # Each flip is written in place (one byte with pwrite, not the whole file again: a truncating
    # rewrite per flip cost most of this test's time); the file then differs from the log in one bit.
    fd = os.open(seg, os.O_RDWR)
    try:
        for i, byte in enumerate(original):
            for bit in range(8):
                os.pwrite(fd, bytes([byte ^ (1 << bit)]), i)
                result = verify_log(agency_dir, "a", anchor=head)
                assert not result.ok, f"flip of bit {bit} in byte {i} went unnoticed"
            os.pwrite(fd, bytes([byte]), i)
    finally:
        os.close(fd)
    assert seg.read_bytes() == original and verify_log(agency_dir, "a", anchor=head).ok, "the unflipped log verifies"


def test_fast_reader_accepts_only_what_the_general_parser_accepts(tmp_path: Path) -> None:
    agency_dir, _ = make_log(tmp_path, 2)
    head = line_head("a")
    for line in read(agency_dir)[1]:
        buf = bytearray(line)
        for i in range(len(buf)):
            for bit in range(8):
                buf[i] ^= 1 << bit
                fields = fast_fields(bytes(buf), head)
                if fields is not None:
                    rec = parse_canonical(bytes(buf))
                    assert (rec["seq"], rec["type"], rec["data"], rec["prev"], rec["hash"]) == fields[:5]
                buf[i] ^= 1 << bit


def test_edit_and_rehash_of_later_records_is_caught_by_the_anchor(tmp_path: Path) -> None:
    agency_dir, head = make_log(tmp_path, 5)
    segs = read(agency_dir)

    def edit(seq: int, rec: dict[str, Any]) -> None:
        rec["data"]["path"] = "forged.md"

    rechain(segs, edit, 3)
    write(agency_dir, segs)
    assert verify_log(agency_dir, "a").ok  # an honest re-hash fools a verifier without the anchor...
    assert rejected(agency_dir, head) == head.seq  # ...but not one with it


@pytest.mark.parametrize("how", ["delete", "duplicate", "swap"])
def test_deleted_duplicated_swapped_lines(tmp_path: Path, how: str) -> None:
    agency_dir, head = make_log(tmp_path, 5)
    segs = read(agency_dir)
    lines = segs[1]
    if how == "delete":
        del lines[2]
    elif how == "duplicate":
        lines.insert(3, lines[2])
    else:
        lines[2], lines[3] = lines[3], lines[2]
    write(agency_dir, segs)
    assert rejected(agency_dir, head) == (3 if how == "duplicate" else 2)


def test_truncation_at_a_line_boundary(tmp_path: Path) -> None:
    agency_dir, head = make_log(tmp_path, 5)
    segs = read(agency_dir)
    segs[1] = segs[1][:-2]
    write(agency_dir, segs)
    assert verify_log(agency_dir, "a").ok
    assert rejected(agency_dir, head) == head.seq - 1


@pytest.mark.parametrize("which", ["middle", "last", "first"])
def test_a_whole_segment_removed(tmp_path: Path, which: str) -> None:
    agency_dir, head = make_log(tmp_path, 8, segment_max_bytes=700)
    segs = list_segments(agency_dir)
    assert len(segs) >= 3
    victim = {"middle": segs[1], "last": segs[-1], "first": segs[0]}[which]
    segment_path(agency_dir, victim).unlink()
    rejected(agency_dir, head)


def test_renumbered_segments_are_rejected(tmp_path: Path) -> None:
    agency_dir, head = make_log(tmp_path, 8, segment_max_bytes=700)
    segs = list_segments(agency_dir)
    segment_path(agency_dir, segs[1]).unlink()
    for n in segs[2:]:
        segment_path(agency_dir, n).rename(segment_path(agency_dir, n - 1))
    rejected(agency_dir, head)


NON_CANONICAL: dict[str, Callable[[bytes], bytes]] = {
    "space": lambda line: line.replace(b'"seq":', b'"seq": '),
    "key order": lambda line: line.replace(b'{"agency_id":"a","data":', b'{"data":').replace(
        b',"hash":', b',"agency_id":"a","hash":'),
    "float": lambda line: line.replace(b'"n":2', b'"n":2.0'),
    "duplicate key": lambda line: line.replace(b'"n":2', b'"n":2,"n":2'),
    "ascii escape": lambda line: line.replace(b'"f2.md"', b'"f\\u0032.md"'),
    "big int": lambda line: line.replace(b'"n":2', b'"n":9007199254740993'),
    "bad key": lambda line: line.replace(b'"n":2', b'"N":2'),
}


@pytest.mark.parametrize("name", sorted(NON_CANONICAL))
def test_non_canonical_lines_are_rejected_even_when_rehashed(tmp_path: Path, name: str) -> None:
    agency_dir, head = make_log(tmp_path, 5)
    segs = read(agency_dir)
    target = 3  # the record with data n=2

    def edit(seq: int, rec: dict[str, Any]) -> bytes:
        line = canonical_bytes({**rec, "hash": "H" * 64}).replace(b"H" * 64, b"HASH")
        changed = NON_CANONICAL[name](line)
        assert changed != line
        return changed

    rechain(segs, edit, target)
    write(agency_dir, segs)
    new_head = Anchor(head.seq, json.loads(segs[1][-1])["hash"], 1, sum(len(x) + 1 for x in segs[1]))
    assert rejected(agency_dir, new_head, not_because="hash") == target


def test_agency_and_version_and_type_checks(tmp_path: Path) -> None:
    agency_dir, _ = make_log(tmp_path, 3)
    assert not verify_log(agency_dir, "b").ok
    original = read(agency_dir)
    for field, value in (("v", 2), ("type", "segment_start"), ("type", "genesis"), ("seq", 99), ("v", True)):
        segs = {n: list(lines) for n, lines in original.items()}

        def edit(seq: int, rec: dict[str, Any], field: str = field, value: Any = value) -> None:
            rec[field] = value

        rechain(segs, edit, 2)
        write(agency_dir, segs)
        assert not verify_log(agency_dir, "a").ok, field
    with pytest.raises(DataError):
        parse_canonical(b'{"a":1.5}')
