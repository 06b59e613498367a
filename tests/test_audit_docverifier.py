"""The verifier printed in docs/audit-format.md, run as an outsider would, against the daemon's logs."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from koradaemon.audit.anchor import Anchor
from koradaemon.audit.canonical import canonical_bytes
from koradaemon.audit.manager import AuditManager
from koradaemon.audit.record import ZERO_HASH, LineEncoder, hashed_bytes
from koradaemon.audit.segments import list_segments, segment_path

DOC = Path(__file__).resolve().parents[1] / "docs" / "audit-format.md"


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def doc_verifier() -> Any:
    blocks = re.findall(r"```python\n(.*?)```", doc_text(), re.S)
    (code,) = [b for b in blocks if "def verify(" in b]
    namespace: dict[str, Any] = {"__name__": "kbl1_doc"}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace["verify"]


def build(tmp_path: Path) -> tuple[Path, Anchor]:
    m = AuditManager(audit_root=tmp_path / "audit", db_path=tmp_path / "k.db", agency_ids=["a"],
                     segment_max_bytes=1500)
    m.open_all()
    try:
        for i in range(30):
            m.append("a", "index", {"path": f"dir/é{i}.md", "n": -i, "flags": [True, None, "\n\x01"]})
        m.lock("a", "drill")
        m.unlock("a", "drill over")
        m.append("a", "delete", {"path": "dir/é1.md"})
        head = m.anchors.load("a")
    finally:
        m.close()
    assert head is not None
    return tmp_path / "audit" / "a", head


def test_doc_verifier_accepts_the_daemons_logs(tmp_path: Path) -> None:
    verify = doc_verifier()
    agency_dir, head = build(tmp_path)
    assert len(list_segments(agency_dir)) > 3
    assert verify(agency_dir, "a", head.seq, head.hash) == head.seq + 1


def test_doc_verifier_accepts_a_repaired_log_and_ignores_a_torn_tail(tmp_path: Path) -> None:
    verify = doc_verifier()
    agency_dir, _ = build(tmp_path)
    seg = segment_path(agency_dir, 2)
    lines = seg.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"n":-', b'"n":-9', 1)
    seg.write_bytes(b"\n".join(lines))
    m = AuditManager(audit_root=tmp_path / "audit", db_path=tmp_path / "k.db", agency_ids=["a"])
    m.open_all()
    try:
        assert not m.verify("a")["a"].ok and m.lockdown.is_locked("a")
        m.unlock("a", "accepted")
        assert (agency_dir / "quarantine").is_dir()
        m.append("a", "index", {"after": True})
        head = m.anchors.load("a")
    finally:
        m.close()
    assert head is not None
    assert verify(agency_dir, "a", head.seq, head.hash) == head.seq + 1
    with open(segment_path(agency_dir, list_segments(agency_dir)[-1]), "ab") as f:
        f.write(b'{"agency_id":"a","da')
    assert verify(agency_dir, "a", head.seq, head.hash) == head.seq + 1


def tamperings() -> dict[str, Any]:
    def flip(lines: list[bytes]) -> None:
        lines[2] = lines[2].replace(b'"n":-1', b'"n":-7')

    def delete(lines: list[bytes]) -> None:
        del lines[2]

    def swap(lines: list[bytes]) -> None:
        lines[1], lines[2] = lines[2], lines[1]

    def spaces(lines: list[bytes]) -> None:
        lines[2] = lines[2].replace(b'"seq":', b'"seq": ')

    def truncate(lines: list[bytes]) -> None:
        del lines[-1]

    return {"flip": flip, "delete": delete, "swap": swap, "spaces": spaces, "truncate": truncate}


@pytest.mark.parametrize("name", sorted(tamperings()))
def test_doc_verifier_rejects_tampering(tmp_path: Path, name: str) -> None:
    verify = doc_verifier()
    agency_dir, head = build(tmp_path)
    n = list_segments(agency_dir)[-1] if name == "truncate" else 1
    seg = segment_path(agency_dir, n)
    lines = seg.read_bytes().split(b"\n")[:-1]
    tamperings()[name](lines)
    seg.write_bytes(b"".join(x + b"\n" for x in lines))
    with pytest.raises((AssertionError, ValueError)):
        verify(agency_dir, "a", head.seq, head.hash)


def test_doc_verifier_rejects_a_missing_segment(tmp_path: Path) -> None:
    verify = doc_verifier()
    agency_dir, head = build(tmp_path)
    segment_path(agency_dir, 2).unlink()
    with pytest.raises(AssertionError, match="missing"):
        verify(agency_dir, "a", head.seq, head.hash)


def test_worked_example_matches_the_code() -> None:
    text = doc_text()
    enc = LineEncoder("demo")
    line, digest = enc.encode(0, "2026-01-01T00:00:00.000000Z", "genesis", canonical_bytes({"format": "KBL-1"}),
                              ZERO_HASH)
    hashed = hashed_bytes(line[:-1], digest)
    assert hashlib.sha256(hashed).hexdigest() == digest
    assert digest in text and hashed.decode() in text and line[:-1].decode() in text
    assert f"{len(hashed)} bytes):" in text and f"{len(line)} bytes with its" in text
    assert hashed[:20].hex(" ") in text
    data = {"path": "notes/é.md", "bytes": 12, "sha256": "0" * 64}
    line1, digest1 = enc.encode(1, "2026-01-01T00:00:01.500000Z", "index", canonical_bytes(data), digest)
    assert line1[:-1].decode() in text
    rec = json.loads(line1)
    assert rec["prev"] == digest and rec["hash"] == digest1
