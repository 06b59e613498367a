"""Control server over a real Unix socket: auth, refusals, malformed input, errors, limits."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from koradaemon.control.client import ControlClient
from koradaemon.control.protocol import Request
from koradaemon.control.server import ControlServer
from koradaemon.errors import AuthError, ControlError, DataError, NotRunningError, ProtocolError
from koradaemon.service.tokens import TokenStore


class Harness:
    def __init__(self, tmp_path: Path, **server_kw: Any) -> None:
        self.tokens = TokenStore(tmp_path / "tokens")
        self.token_a = self.tokens.ensure("alpha")
        self.token_b = self.tokens.ensure("beta")
        self.refusals: list[tuple[str | None, str, str]] = []
        self._lock = threading.Lock()
        self.path = tmp_path / "run" / "k.sock"
        handlers = {
            "status": lambda r: {"agency_id": r.agency_id, "args": dict(r.args), "peer_uid": r.peer and r.peer.uid},
            "boom": self._boom,
            "data": self._data,
            "read": self._read,
            "weird": lambda r: {"x": object()},
        }
        self.server = ControlServer(
            self.path, authenticate=self.tokens.check, handlers=handlers, on_refusal=self._refused, **server_kw
        )

    def _refused(self, agency_id: str | None, reason: str, op: str) -> None:
        with self._lock:
            self.refusals.append((agency_id, reason, op))

    @staticmethod
    def _boom(req: Request) -> dict[str, Any]:
        raise RuntimeError("handler bug")

    @staticmethod
    def _data(req: Request) -> dict[str, Any]:
        raise DataError("file vanished", hint="rescan")

    @staticmethod
    def _read(req: Request) -> dict[str, Any]:
        owner = req.args.get("owner")
        if owner != req.agency_id:
            raise AuthError(f"data of agency {owner!r} is not yours")
        return {"ok": True}

    def raw(self) -> RawConn:
        return RawConn(self.path)


class RawConn:
    """A client speaking the JSON-lines protocol by hand (frames the real client would never send).

    ``wait_for_backlog``: connect blocking (waits for room in a full accept backlog, as the CLI
    does), and only then use the 10 s timeout for reads."""

    def __init__(self, path: Path, *, wait_for_backlog: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if wait_for_backlog:
            self.sock.connect(os.fspath(path))
            self.sock.settimeout(10)
        else:
            self.sock.settimeout(10)
            self.sock.connect(os.fspath(path))
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> dict[str, Any] | None:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        out: dict[str, Any] = json.loads(line)
        return out

    def request(self, obj: Any) -> dict[str, Any]:
        self.send(json.dumps(obj).encode() + b"\n")
        reply = self.line()
        assert reply is not None
        return reply

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    harness.server.start()
    yield harness
    harness.server.stop()


def test_authenticated_call_returns_result(h: Harness) -> None:
    with ControlClient(h.path) as client:
        result = client.call("status", "alpha", h.token_a, verbose=True)
        again = client.call("status", "beta", h.token_b)
    assert result["agency_id"] == "alpha"
    assert result["args"] == {"verbose": True}
    assert result["peer_uid"] == os.getuid()
    assert again["agency_id"] == "beta"
    assert h.refusals == []


def test_wrong_token_and_unknown_agency_look_the_same(h: Harness) -> None:
    with ControlClient(h.path) as client:
        with pytest.raises(AuthError) as wrong:
            client.call("status", "alpha", h.token_b)
        with pytest.raises(AuthError) as unknown:
            client.call("status", "gamma", h.token_a)
        assert client.call("status", "alpha", h.token_a)["agency_id"] == "alpha"
    assert wrong.value.message == unknown.value.message
    failed = "authentication failed"
    assert [(a, r) for a, r, _ in h.refusals] == [("alpha", failed), ("gamma", failed)]


def test_unknown_op_is_refused_after_auth(h: Harness) -> None:
    conn = h.raw()
    reply = conn.request({"id": 1, "op": "drop.tables", "agency_id": "alpha", "token": h.token_a})
    assert reply["ok"] is False and reply["id"] == 1
    assert reply["error"]["code"] == "protocol"
    assert "unknown operation" in reply["error"]["message"]
    assert conn.request({"id": 2, "op": "status", "agency_id": "alpha", "token": h.token_a})["ok"] is True
    conn.close()
    assert h.refusals == [("alpha", "unknown operation", "drop.tables")]


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"{not json\n", "not valid JSON"),
        (b"\xff\xfe{}\n", "not valid UTF-8"),
        (b"[1, 2]\n", "must be a JSON object"),
        (b'{"id": 3, "op": "status", "agency_id": "alpha"}\n', "'token'"),
        (b'{"id": 3, "op": 5, "agency_id": "alpha", "token": "t"}\n', "'op'"),
        (b'{"id": 3, "op": "status", "agency_id": "alpha", "token": "t", "args": []}\n', "'args'"),
        (b'{"id": {"x": 1}, "op": "status", "agency_id": "alpha", "token": "t"}\n', "'id'"),
        (b'{"id": 1, "id": 2, "op": "status", "agency_id": "alpha", "token": "t"}\n', "duplicate key"),
        (b'{"id": 3, "op": "status", "agency_id": "alpha", "token": "t", "sql": "x"}\n', "unknown request field"),
        (b"[" * 100000 + b"\n", "not valid JSON"),
        (b'{"id": 1e999, "op": "status", "agency_id": "alpha", "token": "t"}\n', "out of range"),
        (b'{"id": -1e999, "op": "status", "agency_id": "alpha", "token": "t"}\n', "out of range"),
        (b'{"id": 1, "op": "status", "agency_id": "alpha", "token": "t", "args": {"x": 1e400}}\n', "out of range"),
        (b'{"id": ' + b"9" * 5000 + b', "op": "status", "agency_id": "alpha", "token": "t"}\n', "not valid JSON"),
        (b'{"id": 9007199254740992, "op": "status", "agency_id": "alpha", "token": "t"}\n', "'id'"),
        (b'{"id": [1], "op": "status", "agency_id": "alpha", "token": "t"}\n', "'id'"),
        (b'{"id": 1, "op": null, "agency_id": "alpha", "token": "t"}\n', "'op'"),
        (b'{"id": 1, "op": ["status"], "agency_id": "alpha", "token": "t"}\n', "'op'"),
        (b'{"id": 1, "op": "status", "agency_id": 7, "token": "t"}\n', "'agency_id'"),
        (b'{"id": 1, "op": "status", "agency_id": {"a": 1}, "token": "t"}\n', "'agency_id'"),
        (b'{"id": 1, "op": "status", "agency_id": "alpha", "token": 1.5}\n', "'token'"),
        (b'{"id": 1, "op": "status", "agency_id": "alpha", "token": ["t"]}\n', "'token'"),
        (b'{"id": 1, "op": "status", "agency_id": "alpha", "token": "t", "args": "x"}\n', "'args'"),
        (b'{"id": 1, "op": "status", "agency_id": "alpha", "token": "t", "args": null}\n', "'args'"),
        (b"null\n", "must be a JSON object"),
        (b"17\n", "must be a JSON object"),
        (b'"status"\n', "must be a JSON object"),
        (b"\xc3\x28\n", "not valid UTF-8"),
        (b'{"id": "\xed\xa0\x80", "op": "status"}\n', "not valid UTF-8"),
    ],
)
def test_malformed_request_gets_error_and_connection_survives(h: Harness, payload: bytes, needle: str) -> None:
    conn = h.raw()
    pipelined = json.dumps({"id": "next", "op": "status", "agency_id": "alpha", "token": h.token_a}).encode()
    conn.send(payload + pipelined + b"\n")  # the good request rides in the same write
    reply = conn.line()
    assert reply is not None and reply["ok"] is False
    assert reply["error"]["code"] == "protocol"
    assert needle in reply["error"]["message"]
    ok = conn.line()
    assert ok == {"id": "next", "ok": True, "result": {"agency_id": "alpha", "args": {}, "peer_uid": os.getuid()}}
    conn.close()
    assert len(h.refusals) == 1 and h.refusals[0][1].startswith("malformed request")


def test_blank_lines_are_ignored(h: Harness) -> None:
    conn = h.raw()
    conn.send(b"\n  \n")
    assert conn.request({"id": 1, "op": "status", "agency_id": "alpha", "token": h.token_a})["ok"] is True
    conn.close()
    assert h.refusals == []


def test_oversized_line_gets_error_then_resyncs_at_the_next_newline(tmp_path: Path) -> None:
    harness = Harness(tmp_path, max_request_bytes=4096)
    with harness.server:
        conn = harness.raw()
        ok = {"id": "after", "op": "status", "agency_id": "alpha", "token": harness.token_a}
        # the huge line arrives in pieces; the good request is pipelined right behind its newline
        conn.send(b'{"id": 1, "pad": "' + b"x" * 10000)
        reply = conn.line()
        assert reply is not None and reply["error"]["code"] == "protocol"
        assert "request too large" in reply["error"]["message"]
        conn.send(b"y" * 20000 + b'"}\n' + json.dumps(ok).encode() + b"\n")
        after = conn.line()
        assert after is not None and after["id"] == "after" and after["ok"] is True
        # a too-large line complete in one piece, with a request behind it in the same write
        conn.send(b"z" * 9000 + b"\n" + json.dumps({**ok, "id": "again"}).encode() + b"\n")
        first, second = conn.line(), conn.line()
        assert first is not None and "request too large" in first["error"]["message"]
        assert second is not None and second["id"] == "again" and second["ok"] is True
        conn.close()
    assert harness.refusals == [(None, "request too large", ""), (None, "request too large", "")]


def test_line_just_under_limit_is_accepted(tmp_path: Path) -> None:
    harness = Harness(tmp_path, max_request_bytes=4096)
    with harness.server:
        base = {"id": 1, "op": "status", "agency_id": "alpha", "token": harness.token_a, "args": {"p": ""}}
        pad = 4096 - len(json.dumps(base))
        base["args"] = {"p": "x" * pad}
        assert len(json.dumps(base)) == 4096
        conn = harness.raw()
        assert conn.request(base)["ok"] is True
        conn.close()


def test_handler_exceptions_become_json_errors(h: Harness) -> None:
    with ControlClient(h.path) as client:
        with pytest.raises(ControlError) as internal:
            client.call("boom", "alpha", h.token_a)
        assert internal.value.code == "internal"
        assert "handler bug" not in internal.value.message  # details stay in the log
        with pytest.raises(DataError) as data:
            client.call("data", "alpha", h.token_a)
        assert data.value.hint == "rescan"
        with pytest.raises(ControlError) as weird:
            client.call("weird", "alpha", h.token_a)
        assert weird.value.code == "internal"
        assert client.call("status", "alpha", h.token_a)["agency_id"] == "alpha"
    assert h.refusals == []


def test_other_agency_data_is_refused_and_reported(h: Harness) -> None:
    with ControlClient(h.path) as client:
        assert client.call("read", "alpha", h.token_a, owner="alpha") == {"ok": True}
        with pytest.raises(AuthError):
            client.call("read", "alpha", h.token_a, owner="beta")
    assert h.refusals == [("alpha", "forbidden: data of agency 'beta' is not yours", "read")]


def test_refusals_are_rate_limited(tmp_path: Path) -> None:
    harness = Harness(tmp_path, refusal_burst=3, refusal_rate=0.001)
    with harness.server:
        conn = harness.raw()
        for i in range(50):
            reply = conn.request({"id": i, "op": "status", "agency_id": "alpha", "token": "wrong"})
            assert reply["error"]["code"] == "auth"
        conn.close()
    assert len(harness.refusals) == 3
    assert harness.server.refusals.suppressed == 47


def test_socket_is_private(h: Harness) -> None:
    st = h.path.lstat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    leftovers = [p.name for p in h.path.parent.iterdir() if p.name != h.path.name]
    assert leftovers == []


def test_stop_unlinks_socket_and_client_sees_not_running(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.server.start()
    conn = harness.raw()  # an idle connection must not hold up the stop
    harness.server.stop()
    assert not harness.path.exists()
    assert conn.line() is None
    conn.close()
    with pytest.raises(NotRunningError):
        ControlClient(harness.path).call("status", "alpha", harness.token_a)
    assert not ControlClient(harness.path).is_running()


def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    harness = Harness(tmp_path)
    harness.path.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.fspath(harness.path))
    stale.close()  # the file stays, nobody listens: what a crash leaves behind
    assert harness.path.exists()
    with harness.server, ControlClient(harness.path) as client:
        assert client.call("status", "alpha", harness.token_a)["agency_id"] == "alpha"


def test_refuses_to_start_when_another_daemon_answers(h: Harness, tmp_path: Path) -> None:
    second = ControlServer(h.path, authenticate=lambda a, t: True, handlers={})
    with pytest.raises(ControlError, match="already listening"):
        second.start()
    with ControlClient(h.path) as client:  # the first one is untouched
        assert client.call("status", "alpha", h.token_a)["agency_id"] == "alpha"


def test_refuses_non_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "k.sock"
    path.write_text("precious")
    server = ControlServer(path, authenticate=lambda a, t: True, handlers={})
    with pytest.raises(ControlError, match="not a socket"):
        server.start()
    assert path.read_text() == "precious"


def test_many_concurrent_clients(h: Harness) -> None:
    errors: list[BaseException] = []
    results: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        agency, token = ("alpha", h.token_a) if n % 2 else ("beta", h.token_b)
        try:
            with ControlClient(h.path) as client:
                for i in range(20):
                    got = client.call("status", agency, token, n=n, i=i)
                    assert got["agency_id"] == agency and got["args"] == {"n": n, "i": i}
            with lock:
                results.append(agency)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(results) == 24


def test_protocol_error_class_round_trip(h: Harness) -> None:
    with ControlClient(h.path) as client, pytest.raises(ProtocolError):
        client.call("nope", "alpha", h.token_a)
