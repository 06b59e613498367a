"""The control server cannot be starved: slots, timeouts, backlog waits, slow handlers, refusal buckets.

All over real Unix sockets against a real :class:`ControlServer`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from test_control_server import RawConn

from koradaemon.control.client import ControlClient
from koradaemon.control.connection import Timeouts
from koradaemon.control.protocol import Peer, Request
from koradaemon.control.refusals import RefusalReporter
from koradaemon.control.server import ControlServer
from koradaemon.control.slots import SlotLimits
from koradaemon.errors import BusyError
from koradaemon.service.tokens import TokenStore


class Server:
    """A ControlServer with ``status`` and ``slow`` handlers and the tokens of alpha and beta."""

    def __init__(self, tmp_path: Path, **kw: Any) -> None:
        tokens = TokenStore(tmp_path / "tokens")
        self.token = {"alpha": tokens.ensure("alpha"), "beta": tokens.ensure("beta")}
        self.path = tmp_path / "run" / "k.sock"
        self.release = threading.Event()
        self.slow_started = threading.Semaphore(0)
        self.refusals: list[tuple[str | None, str]] = []
        self.server = ControlServer(
            self.path,
            authenticate=tokens.check,
            handlers={"status": lambda r: {"agency_id": r.agency_id}, "slow": self._slow},
            on_refusal=lambda a, reason, op: self.refusals.append((a, reason)),
            **kw,
        )

    def _slow(self, req: Request) -> dict[str, Any]:
        self.slow_started.release()
        if not self.release.wait(30):
            raise TimeoutError("test never released the slow handler")
        return {"slow": True}

    def call(self, agency: str = "alpha", timeout: float = 10, op: str = "status") -> dict[str, Any]:
        with ControlClient(self.path, timeout=timeout) as client:
            return client.call(op, agency, self.token[agency])

    def raw(self) -> RawConn:
        return RawConn(self.path, wait_for_backlog=True)

    def authenticated(self, agency: str = "alpha") -> RawConn:
        conn = self.raw()
        reply = conn.request({"id": 0, "op": "status", "agency_id": agency, "token": self.token[agency]})
        assert reply["ok"] is True, reply
        return conn


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def factory(**kw: Any) -> Server:
        s = Server(tmp_path / f"s{len(started)}", **kw)
        s.server.start()
        started.append(s)
        return s

    yield factory
    for s in started:
        s.release.set()
        s.server.stop()


def _close_all(conns: list[RawConn]) -> None:
    for c in conns:
        c.close()


def test_idle_unauthenticated_connections_cannot_take_agency_slots(make: Callable[..., Server]) -> None:
    s = make(slots=SlotLimits(preauth=4, per_agency=4, operator=0), is_operator=lambda p: False)
    idle = [s.raw() for _ in range(200)]
    try:
        wait_for(lambda: len(s.server.slots) <= 4, what="pre-auth pool capped at 4")
        for agency in ("alpha", "beta", "alpha"):
            assert s.call(agency, timeout=5) == {"agency_id": agency}
        evicted = idle[0].line()  # the oldest silent connection made room and was told why
        assert evicted is not None and evicted["error"]["code"] == "busy"
        assert "no request sent" in evicted["error"]["message"]
        assert idle[0].line() is None
    finally:
        _close_all(idle)
    wait_for(lambda: s.server.client_count == 0, what="every connection thread ended")


def test_eviction_spares_a_connection_that_is_talking(make: Callable[..., Server]) -> None:
    s = make(slots=SlotLimits(preauth=2, per_agency=4, operator=0), is_operator=lambda p: False)
    talking, silent = s.raw(), s.raw()
    talking.sock.sendall(b'{"id": 1, "op": "st')  # half a request: not silent
    wait_for(lambda: s.server.client_count == 2, what="two pre-auth connections")
    newcomer = s.raw()
    evicted = silent.line()
    assert evicted is not None and evicted["error"]["code"] == "busy"
    talking.sock.sendall(b'atus", "agency_id": "alpha", "token": "' + s.token["alpha"].encode() + b'"}\n')
    assert talking.line() == {"id": 1, "ok": True, "result": {"agency_id": "alpha"}}
    _close_all([talking, silent, newcomer])


def test_dribbling_connection_is_evicted_for_a_whole_request(make: Callable[..., Server]) -> None:
    s = make(slots=SlotLimits(preauth=1, per_agency=4, operator=0), is_operator=lambda p: False)
    dribbler = s.raw()
    dribbler.sock.sendall(b'{"id": 1, "op"')  # half a request, then nothing: holds the only slot
    wait_for(lambda: s.server.client_count == 1, what="dribbler admitted")
    wait_for(lambda: all(c.eviction_rank() == 1 for c in list(s.server._clients)), what="its half line read")
    assert s.call(timeout=5) == {"agency_id": "alpha"}  # the whole request wins the slot
    evicted = dribbler.line()
    assert evicted is not None and evicted["error"]["code"] == "busy"
    dribbler.close()


def test_client_retries_busy_until_a_slot_frees(make: Callable[..., Server]) -> None:
    s = make(slots=SlotLimits(preauth=4, per_agency=1, operator=0), is_operator=lambda p: False)
    holder = s.authenticated("alpha")
    started = time.monotonic()
    with pytest.raises(BusyError, match="too many connections for agency 'alpha'"):
        s.call(timeout=0.5)  # no slot frees within its timeout: busy (exit code 75)
    assert time.monotonic() - started >= 0.45  # it kept trying, it did not fail at once
    timer = threading.Timer(0.3, holder.close)  # the slot frees while the client is waiting
    timer.start()
    try:
        assert s.call(timeout=10) == {"agency_id": "alpha"}
    finally:
        timer.cancel()
        holder.close()


def test_agency_slots_are_per_agency(make: Callable[..., Server]) -> None:
    s = make(slots=SlotLimits(preauth=4, per_agency=2, operator=0), is_operator=lambda p: False)
    held = [s.authenticated("alpha"), s.authenticated("alpha")]
    extra = s.raw()
    reply = extra.request({"id": 5, "op": "status", "agency_id": "alpha", "token": s.token["alpha"]})
    assert reply["error"]["code"] == "busy" and "agency 'alpha'" in reply["error"]["message"]
    assert extra.line() is None  # closed after the refusal
    assert s.call("beta") == {"agency_id": "beta"}  # alpha's crowd leaves beta's slots alone
    _close_all([*held, extra])
    wait_for(lambda: s.server.slots.agency_count("alpha") == 0, what="alpha's slots released")
    assert s.call("alpha") == {"agency_id": "alpha"}


def test_operator_reserve_gets_through_a_full_agency(make: Callable[..., Server]) -> None:
    operator_pid = os.getpid()

    def is_operator(peer: Peer | None) -> bool:
        return peer is not None and peer.pid == operator_pid and threading.current_thread().name != "x"

    s = make(slots=SlotLimits(preauth=4, per_agency=1, operator=1), is_operator=is_operator)
    held = s.authenticated("alpha")
    assert s.server.slots.counts()["agency:alpha"] == 1
    second = s.authenticated("alpha")  # the operator's reserve
    assert s.server.slots.counts()["operator"] == 1
    third = s.raw()
    reply = third.request({"id": 1, "op": "status", "agency_id": "alpha", "token": s.token["alpha"]})
    assert reply["error"]["code"] == "busy"
    _close_all([held, second, third])


def test_unauthenticated_connection_is_closed_after_auth_timeout(make: Callable[..., Server]) -> None:
    s = make(timeouts=Timeouts(auth=0.3, idle=60, read=60))
    conn = s.raw()
    conn.sock.sendall(b'{"id": 1, "op": "status", "agency_id": "alpha", "token": "wrong"}\n')
    first = conn.line()
    assert first is not None and first["error"]["code"] == "auth"  # refused but kept ...
    started = time.monotonic()
    last = conn.line()
    assert last is not None and "no authenticated request in time" in last["error"]["message"]
    assert conn.line() is None  # ... until the pre-auth time runs out
    assert time.monotonic() - started < 5
    conn.close()


def test_slow_sender_hits_the_read_timeout(make: Callable[..., Server]) -> None:
    s = make(timeouts=Timeouts(auth=60, idle=60, read=0.3))
    import select

    conn = s.authenticated()
    try:
        reply: dict[str, Any] | None = None
        for byte in b'{"id": 2, "op": "status", "agency_id": "alpha"':  # one byte every 50 ms
            if select.select([conn.sock], [], [], 0)[0]:
                break  # the server answered (and will close): sending more would only earn a reset
            try:
                conn.sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.05)
        reply = conn.line()
        assert reply is not None and reply["error"]["code"] == "timeout"
        assert "not completed within 0.3s" in reply["error"]["message"]
        assert conn.line() is None
    finally:
        conn.close()


def test_a_client_still_sending_gets_its_timeout_reply_not_a_reset(make: Callable[..., Server]) -> None:
    """The server closes a connection whose client keeps sending half a line: the bytes that
    arrive around the close are read and dropped (a lingering close), so the error line already
    sent reaches the client instead of being lost to a connection reset."""
    s = make(timeouts=Timeouts(auth=60, idle=60, read=0.3))
    import select

    for _ in range(5):  # the race is per attempt: several attempts make a reset very likely without it
        conn = s.authenticated()
        try:
            conn.send(b'{"id": 3, "op": "status", "agency_id": "alpha", "pad": "')
            deadline = time.monotonic() + 10
            while not select.select([conn.sock], [], [], 0)[0]:  # keep typing until the server answers
                assert time.monotonic() < deadline, "no timeout reply within 10 s"
                with contextlib.suppress(OSError):
                    conn.sock.send(b"x" * 64)
                time.sleep(0.0005)
            with contextlib.suppress(OSError):  # one more burst right after the reply, as a typist would
                conn.sock.send(b"x" * 4096)
            reply = conn.line()
            assert reply is not None and reply["error"]["code"] == "timeout", reply
            assert conn.line() is None
        finally:
            conn.close()


def test_idle_connection_is_closed_and_client_reconnects(make: Callable[..., Server]) -> None:
    s = make(timeouts=Timeouts(auth=60, idle=0.3, read=60))
    with ControlClient(s.path, timeout=5) as client:
        assert client.call("status", "alpha", s.token["alpha"]) == {"agency_id": "alpha"}
        wait_for(lambda: s.server.client_count == 0, what="idle connection closed by the server")
        assert client.call("status", "alpha", s.token["alpha"]) == {"agency_id": "alpha"}


def test_slow_handlers_do_not_block_other_connections(make: Callable[..., Server]) -> None:
    s = make()
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(s.call(op="slow", timeout=30))) for _ in range(8)]
    for t in threads:
        t.start()
    for _ in threads:
        assert s.slow_started.acquire(timeout=10), "slow handler never started"
    assert s.call("beta", timeout=5) == {"agency_id": "beta"}  # answered while eight handlers hang
    s.release.set()
    for t in threads:
        t.join(30)
    assert results == [{"slow": True}] * 8


def test_client_waits_on_a_full_backlog_instead_of_failing(tmp_path: Path) -> None:
    path = tmp_path / "b.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(os.fspath(path))
    listener.listen(1)
    queued: list[socket.socket] = []
    try:
        while True:  # fill the backlog: the kernel answers EAGAIN once it is full
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(os.fspath(path))
            except BlockingIOError:
                s.close()
                break
            queued.append(s)
        client = ControlClient(path, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(BusyError, match="did not accept the connection in time"):
            client._connect(0.3)
        assert time.monotonic() - started >= 0.25  # it waited, it did not fail at once
        got: list[socket.socket] = []
        waiter = threading.Thread(target=lambda: got.append(ControlClient(path)._connect(10)))
        waiter.start()
        accepted = [listener.accept()[0] for _ in range(len(queued) + 1)]  # the daemon catches up
        waiter.join(10)
        assert len(got) == 1
        for sock in (*accepted, *got):
            sock.close()
    finally:
        for s in queued:
            s.close()
        with contextlib.suppress(OSError):
            listener.close()


def test_refusal_buckets_are_per_agency() -> None:
    reported: list[tuple[str | None, str]] = []
    rep = RefusalReporter(lambda a, r, o: reported.append((a, r)), burst=5, rate=0.0,
                          is_known=lambda a: a in ("alpha", "beta"))
    for _ in range(200):
        rep.report("beta", "authentication failed", "status")
    for i in range(200):
        rep.report(f"nobody{i}", "authentication failed", "status")  # unknown ids share one bucket
    for _ in range(5):
        assert rep.report("alpha", "authentication failed", "status") is True
    assert [a for a, _ in reported].count("alpha") == 5
    assert [a for a, _ in reported].count("beta") == 5
    assert rep.suppressed_for("beta") == 195
    assert rep.suppressed_for("alpha") == 0
    assert rep.suppressed == 195 + 195


def test_heavy_operations_are_bounded_per_agency_and_run_niced(tmp_path: Path) -> None:
    tokens = TokenStore(tmp_path / "tokens")
    tok = {a: tokens.ensure(a) for a in ("alpha", "beta")}
    release = threading.Event()
    entered = threading.Semaphore(0)
    nice: list[int] = []

    def heavy(req: Request) -> dict[str, Any]:
        nice.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        entered.release()
        if not release.wait(30):
            raise TimeoutError("never released")
        return {"done": req.agency_id}

    server = ControlServer(tmp_path / "k.sock", authenticate=tokens.check,
                           handlers={"heavy": heavy, "status": lambda r: {"ok": True}},
                           heavy_ops=frozenset({"heavy"}), heavy_per_agency=2, heavy_wait_s=0.5)
    results: list[Any] = []

    def call(agency: str, timeout: float = 30) -> None:
        try:
            with ControlClient(tmp_path / "k.sock", timeout=timeout) as c:
                results.append(c.call("heavy", agency, tok[agency]))
        except BusyError as exc:
            results.append(exc.code)

    with server:
        threads = [threading.Thread(target=call, args=("alpha",)) for _ in range(2)]
        threads.append(threading.Thread(target=call, args=("beta",)))  # beta is not held up by alpha
        for t in threads:
            t.start()
        for _ in threads:
            assert entered.acquire(timeout=10), "heavy handler did not start"
        assert server.heavy.running("alpha") == 2 and server.heavy.running("beta") == 1
        started = time.monotonic()
        call("alpha", timeout=1.0)  # a third of alpha's waits for a turn (retrying) until its timeout: "busy"
        assert results == ["busy"]
        assert 0.9 < time.monotonic() - started < 10
        with ControlClient(tmp_path / "k.sock") as c:  # light requests are not gated
            assert c.call("status", "alpha", tok["alpha"]) == {"ok": True}
        release.set()
        for t in threads:
            t.join(30)
    assert sorted(map(str, results)) == sorted(map(str, ["busy", {"done": "alpha"}, {"done": "alpha"},
                                                         {"done": "beta"}]))
    if sys.platform.startswith("linux"):
        assert nice == [10, 10, 10]  # heavy work runs at nice +10 so light requests win the CPU


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_heavy_operations_outside_nice_ops_start_at_the_daemons_priority(tmp_path: Path) -> None:
    tokens = TokenStore(tmp_path / "tokens")
    tok = tokens.ensure("alpha")
    seen: dict[str, int] = {}

    def record(req: Request) -> dict[str, Any]:
        seen[req.op] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return {}

    base = os.getpriority(os.PRIO_PROCESS, 0)
    server = ControlServer(tmp_path / "k.sock", authenticate=tokens.check,
                           handlers={"search": record, "snapshot": record},
                           heavy_ops=frozenset({"search", "snapshot"}), nice_ops=frozenset({"snapshot"}))
    with server:
        for op in ("search", "snapshot"):  # one connection (one thread) each
            with ControlClient(tmp_path / "k.sock") as c:
                c.call(op, "alpha", tok)
    assert seen == {"search": base, "snapshot": max(base, 10)}
