"""Issue 9: one owner per agency. Lockdown stops every automatic action of that agency, SIGHUP
adds/removes/reconfigures agencies live (or refuses restart-only changes whole), lock/unlock
cycles leak nothing, and a stop returns within its budget."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import DaemonProc, wait_for

from koradaemon.config import load_config
from koradaemon.control.client import ControlClient
from koradaemon.daemon.assembler import Daemon
from koradaemon.errors import AuthError, LockdownError

TWO_STATE_AGENCIES = """\
version: 1
shutdown_timeout_s: {budget}
log: {{level: debug, format: json}}
index: {{workers: 1, optimize_idle_s: 5, max_file_bytes: 20000000000}}
watch: {{debounce_ms: {debounce}}}
vault: {{enabled: true, passphrase_file: secrets/pass, idle_lock_s: 60, auto_interval_s: {interval},
        milestone_settle_s: {settle}, keep_last: 2}}
agencies:
{agencies}
{extra}
"""
ALPHA = "  - {agency_id: alpha, roots: [alpha/notes], state_dirs: [alpha/state]}\n"
BETA = "  - {agency_id: beta, roots: [beta/notes], state_dirs: [beta/state]}\n"
GAMMA = "  - {agency_id: gamma, roots: [gamma/notes]}\n"


def write_config(root: Path, *, agencies: str = ALPHA + BETA, budget: float = 20, debounce: int = 20,
                 interval: float = 0, settle: float = 0, extra: str = "") -> None:
    root.mkdir(parents=True, exist_ok=True)
    for d in ("alpha/notes", "alpha/state", "beta/notes", "beta/state", "gamma/notes", "secrets"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "koradaemon.yaml").write_text(TWO_STATE_AGENCIES.format(
        budget=budget, debounce=debounce, interval=interval, settle=settle, agencies=agencies.rstrip("\n"),
        extra=extra))


def snapshot_ids(root: Path, agency: str) -> list[str]:
    folder = root / "snapshots" / agency
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def tamper_audit(root: Path, agency: str) -> None:
    seg = sorted((root / "audit" / agency).glob("audit-*.jsonl"))[0]
    lines = seg.read_bytes().split(b"\n")
    rec = json.loads(lines[0])
    rec["data"]["tampered"] = True
    lines[0] = json.dumps(rec, sort_keys=True, separators=(",", ":")).encode()
    seg.write_bytes(b"\n".join(lines))


def lock_by_tampering(d: DaemonProc, agency: str) -> None:
    tamper_audit(d.root, agency)
    res = d.client_call("audit.verify", agency)
    assert res["ok"] is False
    wait_for(lambda: d.client_call("status", agency)["agencies"][agency]["locked"], 10, what="lockdown")


@pytest.fixture
def proc(tmp_path: Path) -> DaemonProc:
    return DaemonProc(tmp_path)


def test_lockdown_stops_timer_milestone_signal_and_shutdown_snapshots(tmp_path: Path) -> None:
    write_config(tmp_path, interval=0.3, settle=0.1)
    d = DaemonProc(tmp_path)
    try:
        d.start()
        (tmp_path / "alpha" / "state" / "s.txt").write_text("state")
        wait_for(lambda: len(snapshot_ids(tmp_path, "alpha")) >= 2, 20, 0.05, "alpha's timer snapshots")
        lock_by_tampering(d, "alpha")
        frozen = snapshot_ids(tmp_path, "alpha")
        # every trigger while alpha is locked: milestone (state change), timer, SIGUSR1, manual
        (tmp_path / "alpha" / "state" / "s.txt").write_text("changed while locked")
        d.signal(signal.SIGUSR1)
        with pytest.raises(LockdownError):
            d.client_call("snapshot", "alpha")
        # beta keeps taking snapshots: time passes for the timer, and the signal reached the daemon
        beta_before = snapshot_ids(tmp_path, "beta")
        wait_for(lambda: len(set(snapshot_ids(tmp_path, "beta")) - set(beta_before)) >= 2, 20, 0.05,
                 "beta's snapshots go on")
        assert snapshot_ids(tmp_path, "alpha") == frozen  # none taken, none deleted by retention
        assert d.stop() == 0
        assert snapshot_ids(tmp_path, "alpha") == frozen  # nor at shutdown
        events = d.log_events()
        assert any(e.get("event") == "snapshot_skipped" and e.get("agency_id") == "alpha"
                   and e.get("reason") == "lockdown" for e in events)
        assert any(e.get("event") == "snapshot_taken" and e.get("agency_id") == "beta"
                   and e.get("trigger") == "shutdown" for e in events)
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def test_sighup_adds_removes_and_reconfigures_agencies(tmp_path: Path) -> None:
    write_config(tmp_path, debounce=20)
    d = DaemonProc(tmp_path)
    try:
        d.start()
        beta_token = (tmp_path / "run" / "tokens" / "beta.token").read_text().strip()
        st = d.client_call("status", "alpha")
        assert [w["debounce_ms"] for w in st["agencies"]["alpha"]["watch"]] == [20]
        (tmp_path / "gamma" / "notes" / "g.md").write_text("a gamma note about quinoa\n")
        (tmp_path / "alpha" / "state2").mkdir()
        (tmp_path / "alpha" / "state2" / "more.txt").write_text("second state dir")
        write_config(tmp_path, debounce=0,
                     agencies=ALPHA.replace("[alpha/state]", "[alpha/state, alpha/state2]") + GAMMA)
        d.signal(signal.SIGHUP)
        token_file = tmp_path / "run" / "tokens" / "gamma.token"
        wait_for(token_file.exists, 20, 0.05, "gamma's token")
        hits = wait_for(lambda: d.client_call("search", "gamma", query="quinoa")["hits"], 20, 0.05, "gamma indexed")
        assert hits[0]["path"] == "g.md"
        st = d.client_call("status", "alpha")
        assert [w["debounce_ms"] for w in st["agencies"]["alpha"]["watch"]] == [0]
        snap = d.client_call("snapshot", "alpha")["snapshot"]
        assert {"state0", "state1"} <= set(snap["members"])
        with ControlClient(tmp_path / "run" / "koradaemon.sock", timeout=10) as c, pytest.raises(AuthError):
            c.call("status", "beta", beta_token)
        gamma_status = d.client_call("status", "gamma")
        assert set(gamma_status["agencies"]) == {"gamma"}
        assert d.stop() == 0
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def test_sighup_with_a_restart_only_change_is_refused_whole(tmp_path: Path) -> None:
    write_config(tmp_path)
    d = DaemonProc(tmp_path)
    try:
        d.start()
        text = (tmp_path / "koradaemon.yaml").read_text()
        changed = text.replace("workers: 1", "workers: 2").replace(BETA.rstrip("\n"), (BETA + GAMMA).rstrip("\n"))
        (tmp_path / "koradaemon.yaml").write_text(changed)
        d.signal(signal.SIGHUP)
        ev = wait_for(lambda: [e for e in d.log_events() if e.get("event") == "reload_refused"], 20, 0.05,
                      "reload refused")
        assert "index" in ev[0]["needs_restart"]
        assert not (tmp_path / "run" / "tokens" / "gamma.token").exists()  # nothing half-applied
        assert d.client_call("ping", "beta") == {"pong": True}
        assert d.stop() == 0
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def _kora_threads() -> list[str]:
    """Every thread but the main one, by name (watchdog's unnamed emitters count as "Thread")."""
    names = (t.name for t in threading.enumerate() if t is not threading.main_thread())
    return sorted("Thread" if re.fullmatch(r"Thread-\d+( \(.*\))?", n) else n for n in names)


def test_fifty_lock_unlock_cycles_leak_no_thread_or_observer(tmp_path: Path) -> None:
    write_config(tmp_path, interval=3600, settle=30)
    (tmp_path / "secrets" / "pass").write_text("correct horse battery staple\n")
    (tmp_path / "secrets" / "pass").chmod(0o600)
    (tmp_path / "alpha" / "notes" / "a.md").write_text("alpha text\n")
    cfg = load_config(tmp_path / "koradaemon.yaml", data_root=tmp_path)
    before = _kora_threads()
    daemon = Daemon(cfg)
    try:
        daemon.start()
        wait_for(daemon.pipeline.idle, 20, 0.02, "initial sync")
        runtime = daemon.agencies.require("alpha")
        assert runtime.active
        started = _kora_threads()
        for i in range(50):
            runtime.lock(f"cycle {i}")
            assert runtime.locked and not runtime.active and not runtime.watch_stats()
            runtime.unlock(f"cycle {i} over")
            assert not runtime.locked and runtime.active
        wait_for(daemon.pipeline.idle, 20, 0.02, "reconcile crawls done")
        # same threads as before the cycles (names include one watcher, debouncer and state observer each)
        wait_for(lambda: _kora_threads() == started, 10, 0.02, "thread set back to the start value")
        assert sum(1 for n in _kora_threads() if n.startswith("kora-state-alpha")) == 1
    finally:
        daemon.stop()
    wait_for(lambda: _kora_threads() == before, 10, 0.02, "every daemon thread stopped")


def _stop_seconds(d: DaemonProc) -> float:
    assert d.proc is not None
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    d.proc.wait(60)
    return time.monotonic() - t0


def test_stop_within_budget_with_a_sigterm_ignoring_agent(tmp_path: Path) -> None:
    budget = 3.0
    port_cmd = json.dumps([sys.executable, "-m", "koradaemon.testing.fake_agent", "--port", "0", "--ignore-term"])
    extra = f"""agent:
  enabled: true
  agency_id: alpha
  command: {port_cmd}
  workdir: alpha/work
  state_dir: alpha/state
  health_url: http://127.0.0.1:1
  probe_interval_s: 0.1
  startup_timeout_s: 60
  drain_s: 30
"""
    write_config(tmp_path, budget=budget, extra=extra)
    d = DaemonProc(tmp_path)
    try:
        d.start()
        wait_for(lambda: d.client_call("status")["agent"].get("pid"), 20, 0.05, "agent started")
        agent_pid = int(d.client_call("status")["agent"]["pid"])
        took = _stop_seconds(d)
        assert d.proc is not None and d.proc.returncode == 0
        assert took <= budget + 1.0, took
        with pytest.raises(ProcessLookupError):
            os.kill(agent_pid, 0)  # killed with its group and reaped, not left behind
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def test_stop_within_budget_with_a_10_gb_file_half_indexed(tmp_path: Path) -> None:
    budget = 3.0
    write_config(tmp_path, budget=budget)
    big = tmp_path / "alpha" / "notes" / "big.txt"
    with open(big, "wb") as fh:  # 10 GB, sparse: text first, then a hole (reads as NUL bytes)
        fh.write(b"the beginning of a very large text file\n" * 1000)
        fh.truncate(10 * 1024**3)
    d = DaemonProc(tmp_path)
    try:
        d.start(wait_ready=False)
        wait_for(lambda: (st := d.status()) is not None and st.get("ready") and not st["queue"]["idle"], 30, 0.05,
                 "the big file being indexed")
        took = _stop_seconds(d)
        assert d.proc is not None and d.proc.returncode == 0
        assert took <= budget + 1.0, took
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
