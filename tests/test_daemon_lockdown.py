"""A tampered audit log locks its agency down; the other agency goes on; only an audited unlock ends it."""

from __future__ import annotations

import json

import apsw
import pytest
from conftest import DaemonProc, wait_for

from koradaemon.errors import LockdownError


def tamper(d: DaemonProc, agency: str) -> None:
    seg = sorted((d.root / "audit" / agency).glob("audit-*.jsonl"))[0]
    lines = seg.read_bytes().splitlines(keepends=True)
    rec = json.loads(lines[0])
    rec["data"]["forged"] = 1  # change a record without fixing its hash
    lines[0] = (json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n").encode()
    seg.write_bytes(b"".join(lines))


def alpha_documents(d: DaemonProc) -> set[str]:
    """What the index holds for alpha, read from the database directly (the socket refuses alpha now)."""
    conn = apsw.Connection(str(d.root / "kora_kernel.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return {str(p) for (p,) in conn.execute("SELECT path FROM documents WHERE agency_id = 'alpha'")}
    finally:
        conn.close()


def test_tampered_log_locks_only_its_agency(daemon: DaemonProc) -> None:
    (daemon.root / "alpha" / "notes" / "a.md").write_text("alpha text about lentils\n")
    (daemon.root / "beta" / "notes" / "b.md").write_text("beta text about barley\n")
    daemon.start()
    assert daemon.search("lentils")
    assert daemon.stop() == 0
    tamper(daemon, "alpha")
    res = daemon.cli("audit", "verify", "--agency", "alpha")
    assert res.returncode != 0 and "FAIL agency=alpha first_bad_seq=0" in res.stdout

    daemon.start()
    st = daemon.client_call("status", "beta")
    assert st["lockdowns"] == [], "beta's view does not reveal alpha's state"
    with pytest.raises(LockdownError):
        daemon.client_call("search", "alpha", query="lentils")
    assert daemon.search("barley", "beta"), "the other agency keeps working"
    # alpha's watchers are stopped: a new file is not indexed.
    (daemon.root / "alpha" / "notes" / "new.md").write_text("written during lockdown\n")
    (daemon.root / "beta" / "notes" / "new.md").write_text("beta marker oats\n")
    wait_for(lambda: daemon.search("oats", "beta"), 10, what="beta still indexing")
    assert "new.md" not in alpha_documents(daemon), "alpha's watchers are stopped during the lockdown"
    alpha = daemon.client_call("status", "beta")
    assert "alpha" not in alpha["agencies"], "status for beta does not show alpha's data"
    human = daemon.cli("status").stdout  # the operator's view: every agency whose token it can read
    assert "lockdowns: alpha" in human and "agency alpha: LOCKDOWN" in human

    res = daemon.cli("audit", "unlock", "--agency", "alpha", "--reason", "tamper drill: restored from backup")
    assert res.returncode == 0, res.stderr
    wait_for(lambda: daemon.search("lockdown") != [], 15, what="alpha watching and indexing again")
    assert "new.md" in alpha_documents(daemon), "the unlock's reconcile crawl picked up the file"
    res = daemon.cli("audit", "verify", "--agency", "alpha")
    assert res.returncode == 0, res.stdout
    types = [json.loads(line)["type"] for seg in sorted((daemon.root / "audit" / "alpha").glob("audit-*.jsonl"))
             for line in seg.read_text().splitlines() if line.strip()]
    assert "unlock" in types
    assert daemon.stop() == 0
