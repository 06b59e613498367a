"""The control socket of a real daemon: per-agency refusal limits, the live event stream,
starvation by idle connections, and (with the query time limit) pathological searches."""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DaemonProc, wait_for

from koradaemon.control.client import ControlClient
from koradaemon.errors import AuthError, KoraError


def token(d: DaemonProc, agency: str) -> str:
    return (d.root / "run" / "tokens" / f"{agency}.token").read_text().strip()


def sock_path(d: DaemonProc) -> Path:
    return d.root / "run" / "koradaemon.sock"


def audit_records(d: DaemonProc, agency: str, record_type: str) -> list[dict[str, Any]]:
    out = []
    for seg in sorted((d.root / "audit" / agency).glob("audit-*.jsonl")):
        for line in seg.read_text().splitlines():
            rec = json.loads(line)
            if rec["type"] == record_type:
                out.append(rec)
    return out


def raw_connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(os.fspath(path))  # blocking: waits for room in the backlog like a patient attacker
    return s


def read_lines(s: socket.socket, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    s.settimeout(timeout)
    buf = b""
    while buf.count(b"\n") < count:
        chunk = s.recv(65536)
        assert chunk, f"connection closed after {len(buf.splitlines())} of {count} replies"
        buf += chunk
    return [json.loads(line) for line in buf.splitlines()[:count]]


def test_refusal_flood_naming_beta_never_silences_alphas_audit(daemon: DaemonProc) -> None:
    daemon.start()
    assert audit_records(daemon, "alpha", "refused") == []
    flood = raw_connect(sock_path(daemon))
    bad_beta = b"".join(
        json.dumps({"id": i, "op": "status", "agency_id": "beta", "token": "guess"}).encode() + b"\n"
        for i in range(200)
    )
    flood.sendall(bad_beta)
    assert all(r["error"]["code"] == "auth" for r in read_lines(flood, 200))
    flood.close()
    with ControlClient(sock_path(daemon)) as client:
        for _ in range(5):
            with pytest.raises(AuthError):
                client.call("status", "alpha", "not-alphas-token")
    alpha = wait_for(lambda: len(refused := audit_records(daemon, "alpha", "refused")) >= 5 and refused,
                     15, what="alpha's five refusals audited")
    assert [r["data"]["reason"] for r in alpha] == ["authentication failed"] * 5
    beta = audit_records(daemon, "beta", "refused")
    assert 0 < len(beta) < 200  # beta's own noise is rate-limited in beta's bucket
    assert daemon.stop() == 0


def test_subscribe_streams_own_events_only_and_hang_up_frees_it(daemon: DaemonProc) -> None:
    daemon.start()

    def control() -> dict[str, int]:
        return dict(daemon.client_call("status")["agencies"]["alpha"]["control"])

    with ControlClient(sock_path(daemon)) as client, pytest.raises(AuthError):
        next(client.stream("subscribe", "beta", token(daemon, "alpha")))  # alpha's token, beta's stream
    client = ControlClient(sock_path(daemon))
    stream = client.stream("subscribe", "alpha", token(daemon, "alpha"), idle_timeout=20)
    assert next(stream) == {"type": "subscribed", "agency_id": "alpha"}
    assert control()["subscribers"] == 1

    (daemon.root / "beta" / "notes" / "beta-only-secret.md").write_text("quokka beta's confidential plan\n")
    wait_for(lambda: daemon.client_call("search", "beta", query="quokka")["hits"], 20, what="beta indexed")
    (daemon.root / "alpha" / "notes" / "alpha-live.md").write_text("alpha's wombat note\n")
    seen: list[dict[str, Any]] = []
    for event in stream:  # beta's event, had it leaked, was published before alpha's
        seen.append(event)
        data = event.get("data") or {}  # events of the schema nest their fields (docs/events.md)
        if event.get("type") == "index" and data.get("path") == "alpha-live.md":
            break
    assert "beta" not in json.dumps(seen) and "quokka" not in json.dumps(seen), seen
    assert seen[-1]["data"]["chunks"] == 1 and len(seen[-1]["data"]["sha256"]) == 64

    stream.close()  # hang up
    wait_for(lambda: control() == {"connections": 1, "subscribers": 0}, 15,  # the 1 is this status call
             what="subscription and connection freed after the hang-up")
    wait_for(lambda: any(e.get("event") == "control_stream_ended" and e.get("reason") == "hang-up"
                         for e in daemon.log_events()), 15, what="the daemon noticed the hang-up")
    with ControlClient(sock_path(daemon)) as again:  # and it still serves
        assert again.call("ping", "alpha", token(daemon, "alpha")) == {"pong": True}
    assert daemon.stop() == 0


class IdleCrowd:
    """Holds ``n`` connections that never send a byte, reopening those the daemon closes."""

    def __init__(self, path: Path, n: int) -> None:
        self.path = path
        self.socks = [raw_connect(path) for _ in range(n)]
        self.reopened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._hold, name="idle-crowd")

    def __enter__(self) -> IdleCrowd:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        for s in self.socks:
            s.close()

    def _hold(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select(self.socks, [], [], 0.1)
            for s in readable:  # the daemon evicted it (or timed it out): come back at once
                self.socks.remove(s)
                s.close()
                try:
                    self.socks.append(raw_connect(self.path))
                except OSError:
                    return  # the daemon went away
                self.reopened += 1


def cli_status_seconds(d: DaemonProc) -> float:
    started = time.monotonic()
    res = d.cli("status", "--json", timeout=60)
    elapsed = time.monotonic() - started
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["ready"] is True
    return elapsed


def ping_seconds(d: DaemonProc) -> float:
    started = time.monotonic()
    with ControlClient(sock_path(d), timeout=30) as client:
        assert client.call("status", "alpha", token(d, "alpha"))["ready"] is True
    return time.monotonic() - started


def test_cli_status_answers_while_200_idle_connections_are_held(daemon: DaemonProc) -> None:
    daemon.start()
    baseline_cli = min(cli_status_seconds(daemon) for _ in range(3))
    with IdleCrowd(sock_path(daemon), 200) as crowd:
        answer = max(ping_seconds(daemon) for _ in range(5))
        cli = min(cli_status_seconds(daemon) for _ in range(3))  # min: other load on the machine is noise
        assert crowd.reopened > 0  # the crowd really was pushing: the daemon kept evicting it
    print(f"idle crowd: status round trip {answer:.3f}s, CLI {cli:.3f}s (alone {baseline_cli:.3f}s)")
    assert answer < 1.0, f"status took {answer:.3f}s with 200 idle connections held"
    assert cli < baseline_cli + 1.0, f"CLI status took {cli:.3f}s (alone: {baseline_cli:.3f}s)"
    assert daemon.stop() == 0


@pytest.fixture
def big_daemon(tmp_path: Path) -> Iterator[DaemonProc]:
    """~3,000 files of 1,500 words each from a vocabulary of ~300,000 distinct terms, so that
    26 prefix queries OR-ed together expand to every term and read every posting list."""
    d = DaemonProc(tmp_path)
    notes = tmp_path / "alpha" / "notes"
    for n in range(3000):
        words = (f"{chr(97 + (n * 31 + i) % 26)}{(n * 7919 + i * 104729) % 300_000:x}" for i in range(1500))
        (notes / f"f{n:04d}.md").write_text(" ".join(words) + "\n")
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.proc.kill()  # searches without a time limit may still be running: do not wait for them
        d.proc.wait()


# Eight two-letter prefixes OR-ed together (the most a query may hold): each expands to hundreds of
# terms of the fixture's vocabulary, so every query runs into the search time limit.
PATHOLOGICAL = " OR ".join(f"{chr(97 + i)}{i + 1}*" for i in range(8))
TIME_LIMIT_S = 0.5


def search_loops(d: DaemonProc, n: int, outcomes: list[tuple[str, float]], stop: threading.Event
                 ) -> list[threading.Thread]:
    """``n`` clients each running the pathological query again and again until ``stop``."""
    def loop() -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                with ControlClient(sock_path(d), timeout=120) as client:
                    client.call("search", "alpha", token(d, "alpha"), query=PATHOLOGICAL, limit=100)
                outcomes.append(("answered", time.monotonic() - started))
            except KoraError as exc:
                outcomes.append((exc.code, time.monotonic() - started))

    threads = [threading.Thread(target=loop, name=f"test-search-{i}") for i in range(n)]
    for t in threads:
        t.start()
    return threads


def test_cli_status_answers_during_8_pathological_searches_and_200_idle_connections(
    big_daemon: DaemonProc,
) -> None:
    d = big_daemon
    text = d.config.read_text().replace("index: {workers: 1, optimize_idle_s: 5}",
                                        f"index: {{workers: 1, optimize_idle_s: 5, "
                                        f"search_time_limit_ms: {int(TIME_LIMIT_S * 1000)}}}")
    assert "search_time_limit_ms" in text
    d.config.write_text(text)
    d.start(wait_ready=False)
    d.wait_ready(timeout=300)
    baseline_cli = min(cli_status_seconds(d) for _ in range(3))
    outcomes: list[tuple[str, float]] = []
    stop = threading.Event()
    with IdleCrowd(sock_path(d), 200):
        threads = search_loops(d, 8, outcomes, stop)
        try:
            wait_for(lambda: len(outcomes) >= 8, 60, 0.05, "the searches running")
            answer = max(ping_seconds(d) for _ in range(5))
            cli = min(cli_status_seconds(d) for _ in range(3))  # min: other load on the machine is noise
        finally:
            stop.set()
            for t in threads:
                t.join(120)
    print(f"8 search loops ({len(outcomes)} searches): status {answer:.3f}s, CLI {cli:.3f}s "
          f"(alone {baseline_cli:.3f}s); outcomes {sorted({o for o, _ in outcomes})}")
    # every search ends: answered, stopped by the time limit, or told to come back (heavy-op gate);
    # none runs unbounded (the wait includes queueing behind the agency's two heavy slots)
    assert {code for code, _ in outcomes} <= {"answered", "too_expensive", "busy"}, outcomes
    assert max(seconds for _, seconds in outcomes) < 8 * TIME_LIMIT_S + 10, outcomes
    assert answer < 1.0, f"status took {answer:.3f}s during 8 pathological searches"
    assert cli < baseline_cli + 1.0, f"CLI status took {cli:.3f}s (alone: {baseline_cli:.3f}s)"
    assert d.stop() == 0


def test_200_concurrent_clients_wait_for_their_turn_instead_of_failing(daemon: DaemonProc) -> None:
    daemon.start()
    tok = token(daemon, "alpha")
    failures: list[str] = []
    answered: list[int] = []
    lock = threading.Lock()
    go = threading.Event()

    def client_loop() -> None:
        go.wait(30)
        for _ in range(5):  # a fresh connection per call, as each CLI run makes
            try:
                with ControlClient(sock_path(daemon), timeout=60) as client:
                    client.call("status", "alpha", tok)
                with lock:
                    answered.append(1)
            except KoraError as exc:
                with lock:
                    failures.append(f"{exc.code}: {exc.message}")

    threads = [threading.Thread(target=client_loop) for _ in range(200)]
    for t in threads:
        t.start()
    go.set()  # all at once: the backlog (64) and alpha's 16 slots overflow
    for t in threads:
        t.join(120)
    assert failures == []
    assert len(answered) == 1000
    assert daemon.stop() == 0


def test_operator_gets_through_when_an_agencys_slots_are_full(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path, extra="control: {agency_slots: 2, operator_slots: 1}")
    try:
        d.start()
        tok = token(d, "alpha")
        hello = json.dumps({"id": 1, "op": "ping", "agency_id": "alpha", "token": tok}).encode() + b"\n"
        held = []
        for _ in range(2):  # whoever holds alpha's token fills alpha's two slots
            s = raw_connect(sock_path(d))
            s.sendall(hello)
            assert read_lines(s, 1)[0]["ok"] is True
            held.append(s)
        res = d.cli("status", "--agency", "alpha", "--json", timeout=60)  # root: the operator's reserve
        assert res.returncode == 0 and json.loads(res.stdout)["ready"] is True, res.stderr
        third = raw_connect(sock_path(d))  # this test runs as root too: it takes the one operator slot
        third.sendall(hello)
        assert read_lines(third, 1)[0]["ok"] is True
        fourth = raw_connect(sock_path(d))
        fourth.sendall(hello)
        refused = read_lines(fourth, 1)[0]
        assert refused["error"]["code"] == "busy" and "agency 'alpha'" in refused["error"]["message"]
        for s in (*held, third, fourth):
            s.close()
        assert d.client_call("status", "beta")["ready"] is True  # beta's slots were never touched
        assert d.stop() == 0
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
