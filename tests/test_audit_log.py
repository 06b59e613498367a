"""The appender: group commit, anchoring, rotation, reopen, torn-tail recovery, write failure."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from koradaemon.audit.anchor import AnchorStore
from koradaemon.audit.record import record_hash
from koradaemon.audit.segments import list_segments, segment_path
from koradaemon.audit.verify import verify_log
from koradaemon.audit.writer import AuditLog
from koradaemon.errors import AuditError, DataError, TamperError, UsageError


def break_descriptor(fd: int) -> None:
    """Replace ``fd`` by a read-only descriptor, so writes to it fail with EBADF (a real OS error)."""
    ro = os.open(os.devnull, os.O_RDONLY)
    os.dup2(ro, fd)
    os.close(ro)


@pytest.fixture
def anchors(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = AnchorStore(tmp_path / "kora_kernel.db")
    yield store
    store.close()


def open_log(tmp_path: Path, anchors: AnchorStore, **kw: object) -> AuditLog:
    alog = AuditLog(tmp_path / "audit" / "a", "a", anchors, **kw)  # type: ignore[arg-type]
    alog.open()
    return alog


def lines_of(agency_dir: Path) -> list[dict[str, object]]:
    out = []
    for n in list_segments(agency_dir):
        out += [json.loads(x) for x in segment_path(agency_dir, n).read_bytes().splitlines()]
    return out


def test_new_log_starts_with_genesis_and_appends_are_anchored(tmp_path: Path, anchors: AnchorStore) -> None:
    alog = open_log(tmp_path, anchors)
    rec = alog.append("index", {"path": "a.md", "bytes": 3})
    assert rec.seq == 1
    assert anchors.load("a") == alog.head
    assert alog.head is not None and alog.head.hash == rec.hash and alog.head.offset == rec.offset
    alog.close()
    recs = lines_of(tmp_path / "audit" / "a")
    assert [r["type"] for r in recs] == ["genesis", "index"]
    assert recs[0]["prev"] == "0" * 64 and recs[1]["prev"] == recs[0]["hash"]
    assert all(record_hash(r) == r["hash"] for r in recs)
    assert recs[1]["ts"].endswith("Z")


def test_concurrent_appenders_share_batches_and_get_distinct_seqs(tmp_path: Path, anchors: AnchorStore) -> None:
    alog = open_log(tmp_path, anchors)
    seqs: list[int] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        for i in range(50):
            r = alog.append("index", {"k": k, "i": i})
            with lock:
                seqs.append(r.seq)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    alog.close()
    assert sorted(seqs) == list(range(1, 401))
    assert alog.batches < 400  # group commit: fewer fsyncs than records
    result = verify_log(tmp_path / "audit" / "a", "a", anchor=anchors.load("a"))
    assert result.ok and result.count == 401


def test_append_nowait_bulk_and_rotation_keep_one_chain(tmp_path: Path, anchors: AnchorStore) -> None:
    alog = open_log(tmp_path, anchors, segment_max_bytes=4096, group_commit_records=16)
    pendings = [alog.append_nowait("index", {"path": f"f{i}.md"}) for i in range(300)]
    last = pendings[-1].result(timeout=10)
    assert all(p.done() for p in pendings)
    alog.close()
    agency_dir = tmp_path / "audit" / "a"
    segs = list_segments(agency_dir)
    assert len(segs) > 3 and segs == list(range(1, len(segs) + 1))
    starts = [json.loads(segment_path(agency_dir, n).read_bytes().splitlines()[0]) for n in segs[1:]]
    pairs = zip(starts, segs[1:], strict=True)
    assert all(s["type"] == "segment_start" and s["data"]["segment"] == n for s, n in pairs)
    result = verify_log(agency_dir, "a", anchor=anchors.load("a"))
    assert result.ok, result
    assert result.head_seq == last.seq + 0 and result.count == 301 + len(segs) - 1


def test_reopen_continues_the_chain_from_the_anchor(tmp_path: Path, anchors: AnchorStore) -> None:
    alog = open_log(tmp_path, anchors)
    for i in range(20):
        alog.append("index", {"i": i})
    alog.close()
    again = AuditLog(tmp_path / "audit" / "a", "a", anchors, full_verify_on_open=False)
    opened = again.open()
    assert opened.checked == 0 and opened.head.seq == 20
    assert again.append("delete", {"path": "x"}).seq == 21
    again.close()
    full = AuditLog(tmp_path / "audit" / "a", "a", anchors)
    assert full.open().checked == 22
    full.close()


def test_start_check_modes_differ_only_before_the_anchor(tmp_path: Path, anchors: AnchorStore) -> None:
    alog = open_log(tmp_path, anchors)
    for i in range(5):
        alog.append("index", {"i": i})
    alog.close()
    seg = segment_path(tmp_path / "audit" / "a", 1)
    seg.write_bytes(seg.read_bytes().replace(b'{"i":1}', b'{"i":6}'))
    cheap = AuditLog(tmp_path / "audit" / "a", "a", anchors, full_verify_on_open=False)
    cheap.open()  # damage before the anchor: only a full verification sees it
    cheap.close()
    with pytest.raises(TamperError) as exc:
        AuditLog(tmp_path / "audit" / "a", "a", anchors).open()
    assert exc.value.seq == 2


def test_records_beyond_the_anchor_are_verified_then_anchored(tmp_path: Path, anchors: AnchorStore) -> None:
    alog = open_log(tmp_path, anchors)
    early = alog.append("index", {"i": 0})
    alog.append("index", {"i": 1})
    alog.close()
    # a crash between fdatasync and the anchor update leaves the anchor one batch behind
    from koradaemon.audit.anchor import Anchor

    anchors.store("a", Anchor(early.seq, early.hash, early.segment, early.offset))
    again = AuditLog(tmp_path / "audit" / "a", "a", anchors, full_verify_on_open=False)
    opened = again.open()
    assert opened.checked == 1 and opened.head.seq == 2 and anchors.load("a") == opened.head
    again.close()


def test_torn_last_line_is_recovered_not_tamper(tmp_path: Path, anchors: AnchorStore) -> None:
    alog = open_log(tmp_path, anchors)
    alog.append("index", {"i": 0})
    alog.close()
    agency_dir = tmp_path / "audit" / "a"
    seg = segment_path(agency_dir, 1)
    size = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(b'{"agency_id":"a","data":{"i":1},"ha')
    again = AuditLog(agency_dir, "a", anchors)
    again.open()
    again.close()
    recs = lines_of(agency_dir)
    assert recs[-1]["type"] == "recovery" and recs[-1]["data"]["offset"] == size
    aside = [p for p in os.listdir(agency_dir) if ".torn-" in p]
    assert len(aside) == 1 and (agency_dir / aside[0]).read_bytes().endswith(b'"ha')
    assert verify_log(agency_dir, "a", anchor=anchors.load("a")).ok


def test_tampering_found_on_open_raises_with_seq(tmp_path: Path, anchors: AnchorStore) -> None:
    alog = open_log(tmp_path, anchors)
    for i in range(3):
        alog.append("index", {"i": i})
    alog.close()
    seg = segment_path(tmp_path / "audit" / "a", 1)
    seg.write_bytes(seg.read_bytes().replace(b'{"i":2}', b'{"i":7}'))
    with pytest.raises(TamperError) as exc:
        AuditLog(tmp_path / "audit" / "a", "a", anchors).open()
    assert exc.value.seq == 3


def test_missing_log_with_an_anchor_is_tamper(tmp_path: Path, anchors: AnchorStore) -> None:
    open_log(tmp_path, anchors).close()
    segment_path(tmp_path / "audit" / "a", 1).unlink()
    with pytest.raises(TamperError):
        AuditLog(tmp_path / "audit" / "a", "a", anchors).open()


def test_bad_input_is_refused_to_the_caller_only(tmp_path: Path, anchors: AnchorStore) -> None:
    alog = open_log(tmp_path, anchors)
    with pytest.raises(UsageError):
        alog.append("genesis", {})
    with pytest.raises(DataError):
        alog.append("index", {"x": 1.5})
    with pytest.raises(DataError):
        alog.append("Bad Type", {})
    assert alog.append("index", {"ok": True}).seq == 1
    alog.close()


def test_a_failed_write_is_not_retried_and_reports_failure(tmp_path: Path, anchors: AnchorStore) -> None:
    failures: list[tuple[str, str]] = []
    alog = open_log(tmp_path, anchors, on_failure=lambda a, why: failures.append((a, why)))
    alog.append("index", {"i": 0})
    head = alog.head
    break_descriptor(alog._fd)  # the segment's descriptor turns read-only: the next write fails for real
    with pytest.raises(AuditError):
        alog.append("index", {"i": 1})
    assert failures and failures[0][0] == "a"
    with pytest.raises(AuditError):
        alog.append("index", {"i": 2})
    assert anchors.load("a") == head
    alog.close()
