"""The audit outbox: every committed index change has exactly one audit record, whatever kill -9 hits.

A real daemon in a process of its own is killed (SIGKILL) 20 times at random moments of a burst of
creates, edits, renames and deletes, and restarted each time (each forked from a pre-imported
interpreter, ``daemon_zygote.py``, so a start costs the daemon's start-up, not Python's). At the end the KBL-1 files are
read here, line by line, and replayed: the documents table must be exactly what the records
describe, no outbox row may have two records, and ``audit verify`` must pass.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
from conftest import DaemonProc, wait_for

from koradaemon.audit.manager import AuditManager
from koradaemon.index import outbox
from koradaemon.index.acknowledger import Acknowledger
from koradaemon.index.db import immediate, open_db

KILLS = 20
ZYGOTE = Path(__file__).with_name("daemon_zygote.py")


class Zygote:
    """The pre-imported koradaemon of ``daemon_zygote.py``: forks daemons, reports how they ended."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ZYGOTE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)

    def ask(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the zygote ended ({self.proc.wait(5)})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(10)
        self.proc.stdout.close()


class Forked:
    """A forked daemon, with the part of Popen's interface DaemonProc uses."""

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self.zygote, self.pid = zygote, pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            status = self.zygote.ask({"poll": self.pid})["status"]
            if status is not None:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = time.monotonic() + (timeout if timeout is not None else 600)
        while (code := self.poll()) is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"koradaemon pid {self.pid}", timeout or 600)
            time.sleep(0.01)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkedDaemon(DaemonProc):
    """DaemonProc whose ``run`` processes are forked by a zygote (real processes, real kill -9)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.zygote = Zygote(self.env)

    def start(self, wait_ready: bool = True) -> DaemonProc:
        argv = [*self.cli_cmd()[3:], "run"]  # the CLI's arguments after "python -m koradaemon"
        pid = self.zygote.ask({"run": argv, "log": str(self.log), "env": self.env})["pid"]
        self.proc = Forked(self.zygote, pid)  # type: ignore[assignment]
        return self.started(wait_ready)


@pytest.fixture
def forked_daemon(tmp_path: Path) -> Iterator[ForkedDaemon]:
    d = ForkedDaemon(tmp_path)
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()
    d.zygote.close()


def read_log(agency_dir: Path) -> list[dict[str, Any]]:
    """Every record of one agency's KBL-1 log, parsed here (not by the code under test)."""
    records = []
    for seg in sorted(agency_dir.glob("audit-*.jsonl")):
        for line in seg.read_bytes().split(b"\n"):
            if line:
                records.append(json.loads(line))
    assert [r["seq"] for r in records] == list(range(len(records))), "seq runs 0, 1, 2, ... across segments"
    return records


def replay(records: list[dict[str, Any]]) -> dict[str, str]:
    """path → sha256 (or 'skip') after applying the index/skip/delete/move records in order."""
    state: dict[str, str] = {}
    for r in records:
        d = r["data"]
        if r["type"] == "index":
            state[d["path"]] = d["sha256"]
        elif r["type"] == "skip":
            state[d["path"]] = "skip"
        elif r["type"] == "delete":
            for p in [p for p in state if p == d["path"] or p.startswith(d["path"] + "/")]:
                del state[p]
        elif r["type"] == "move":
            moving = {p: s for p, s in state.items() if p == d["src"] or p.startswith(d["src"] + "/")}
            for p in moving:
                del state[p]
            state.pop(d["dst"], None)
            for p, s in moving.items():
                state[d["dst"] + p[len(d["src"]):]] = s
    return state


def documents(db: Path, agency: str) -> dict[str, str]:
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = conn.execute("SELECT path, sha256, skipped FROM documents WHERE agency_id = ?", (agency,)).fetchall()
        left = conn.execute("SELECT count(*) FROM audit_outbox").fetchone()[0]
    finally:
        conn.close()
    assert left == 0, f"{left} outbox rows were never drained"
    return {p: ("skip" if skipped else sha) for p, sha, skipped in rows}


def burst(notes: Path, rng: random.Random, stop: threading.Event, tag: int) -> None:
    """Random creates, edits, renames and deletes among a few dozen files until ``stop``."""
    n = 0
    while not stop.is_set():
        n += 1
        name = notes / f"f{rng.randrange(40)}.md"
        op = rng.random()
        try:
            if op < 0.55:
                name.write_text(f"round {tag} change {n} word{rng.randrange(1000)}\n" * rng.randrange(1, 20))
            elif op < 0.75:
                os.rename(name, notes / f"f{rng.randrange(40)}.md")
            else:
                name.unlink()
        except FileNotFoundError:
            pass
        if n % 8 == 0:
            time.sleep(0.002)


def test_every_committed_change_has_exactly_one_audit_record_after_random_kills(forked_daemon: ForkedDaemon) -> None:
    daemon = forked_daemon
    rng = random.Random(12)
    notes = daemon.root / "alpha" / "notes"
    for i in range(KILLS):
        daemon.start()
        stop = threading.Event()
        t = threading.Thread(target=burst, args=(notes, rng, stop, i))
        t.start()
        try:
            time.sleep(rng.uniform(0.05, 0.8))  # the kill lands at a random moment of the burst
            daemon.kill9()
        finally:
            stop.set()
            t.join()
    daemon.start()
    wait_for(lambda: (daemon.status() or {}).get("queue", {}).get("idle"), 60, 0.05, "index idle after restart")
    assert daemon.stop() == 0
    verify = daemon.cli("audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr

    records = read_log(daemon.root / "audit" / "alpha")
    ids = [r["data"]["outbox_id"] for r in records if "outbox_id" in r["data"]]
    assert len(ids) == len(set(ids)), "an outbox row was appended twice"
    assert ids == sorted(ids), "outbox rows are appended in commit order"
    assert len(ids) > KILLS, "the burst produced index records"
    indexed = documents(daemon.root / "kora_kernel.db", "alpha")
    assert indexed, "the burst left documents"
    assert replay(records) == indexed
    starts = [e for e in daemon.log_events() if e.get("event") == "audit_outbox_drained_on_start"]
    assert len(starts) == KILLS + 1
    assert sum(e["records"] for e in starts) > 0, "no kill landed between a commit and its log append"


def test_rows_already_in_the_log_are_not_appended_again(tmp_path: Path) -> None:
    """The crash window between the append and the delete, made on purpose: rows logged, not deleted."""
    db = tmp_path / "k.db"
    open_db(db).close()
    audit = AuditManager(audit_root=tmp_path / "audit", db_path=db, agency_ids=["a"])
    audit.open_all()
    conn = open_db(db)
    with immediate(conn):
        outbox.put(conn, [("a", "index", {"path": f"p{i}", "sha256": "0" * 64}) for i in range(5)])
    rows = outbox.pending(conn, limit=10)
    audit.append_many("a", [(r.type, r.record_data()) for r in rows[:3]])  # appended, then "crash"
    acks = Acknowledger(db_path=db, audit=audit.append_many, appended=audit.appended_outbox_ids)
    assert acks.drain_on_start() == 5
    assert acks.duplicates_skipped == 3
    assert outbox.count(conn) == 0
    conn.close()
    audit.close()
    records = read_log(tmp_path / "audit" / "a")
    assert [r["data"].get("outbox_id") for r in records[1:]] == [r.id for r in rows]


def test_locked_agency_rows_wait_in_the_outbox(tmp_path: Path) -> None:
    """An agency whose log takes no records keeps its rows (nothing lost); the others drain."""
    db = tmp_path / "k.db"
    open_db(db).close()
    audit = AuditManager(audit_root=tmp_path / "audit", db_path=db, agency_ids=["a", "b"])
    audit.open_all()
    audit.lock("b", "test")
    conn = open_db(db)
    with immediate(conn):
        outbox.put(conn, [("a", "index", {"path": "x"}), ("b", "index", {"path": "y"}), ("a", "delete", {"path": "x"})])
    acks = Acknowledger(db_path=db, audit=audit.append_many, appended=audit.appended_outbox_ids)
    assert acks.drain_on_start() == 2
    assert [(r.agency_id, r.data["path"]) for r in outbox.pending(conn, limit=10)] == [("b", "y")]
    audit.unlock("b", "test over")
    assert acks.drain_on_start() == 1
    assert outbox.count(conn) == 0
    conn.close()
    audit.close()
    b_records = read_log(tmp_path / "audit" / "b")
    assert [r["type"] for r in b_records][-2:] == ["unlock", "index"]
