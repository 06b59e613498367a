"""Protocol parsing and error mapping, plus client behaviour when the daemon is absent or silent."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koradaemon.control.client import ControlClient
from koradaemon.control.protocol import (
    BadRequest,
    InternalError,
    encode_request,
    error_body,
    error_from_body,
    parse_request,
)
from koradaemon.control.server import ControlServer
from koradaemon.errors import AuthError, ControlError, LockdownError, NotRunningError, TamperError, VaultLockedError
from koradaemon.service.notify_listener import NotifyListener


def test_round_trip_request() -> None:
    line = encode_request(7, "search", "demo", "tok", {"q": "héllo", "limit": 5})
    assert line.endswith(b"\n")
    env = parse_request(line[:-1])
    assert env.token == "tok"
    assert (env.request.id, env.request.op, env.request.agency_id) == (7, "search", "demo")
    assert env.request.args == {"q": "héllo", "limit": 5}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": NaN, "op": "status", "agency_id": "a", "token": "t"}',
        b'{"id": 1, "op": "Status!", "agency_id": "a", "token": "t"}',
        b'{"id": 1, "op": "status", "agency_id": "", "token": "t"}',
        b'{"id": 1, "op": "status", "agency_id": "a", "token": ""}',
        b'"just a string"',
        b"",
    ],
)
def test_bad_requests(raw: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_request(raw)


def test_bad_request_keeps_what_it_could_read() -> None:
    with pytest.raises(BadRequest) as info:
        parse_request(b'{"id": "r1", "op": "snapshot", "agency_id": "demo", "token": 5}')
    assert (info.value.request_id, info.value.agency_id, info.value.op) == ("r1", "demo", "snapshot")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
FIELDS = st.sampled_from(["id", "op", "agency_id", "token", "args", "extra"])


def check_parse(raw: bytes) -> None:
    try:
        env = parse_request(raw)
    except BadRequest as exc:
        assert exc.code == "protocol" and exc.message
    else:
        assert isinstance(env.request.args, dict) and env.token and env.request.op


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_parse_never_raises_anything_but_bad_request(raw: bytes) -> None:
    check_parse(raw)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(FIELDS, JSON_VALUES, max_size=6))
def test_parse_of_json_objects(obj: dict[str, object]) -> None:
    check_parse(json.dumps(obj).encode())


@pytest.mark.parametrize(
    "exc",
    [TamperError("chain broken", hint="run audit verify"), LockdownError("agency locked"),
     VaultLockedError("vault locked"), InternalError("boom")],
)
def test_error_codes_map_back_to_classes(exc: ControlError | TamperError | LockdownError) -> None:
    rebuilt = error_from_body(error_body(exc))
    assert type(rebuilt) is type(exc)
    assert rebuilt.message == exc.message and rebuilt.hint == exc.hint


def test_unknown_error_code_is_a_control_error() -> None:
    err = error_from_body({"code": "from_the_future", "message": "x"})
    assert type(err) is ControlError
    assert type(error_from_body("garbage")) is ControlError


def test_client_reports_not_running_for_missing_and_stale_socket(tmp_path: Path) -> None:
    missing = tmp_path / "none.sock"
    with pytest.raises(NotRunningError):
        ControlClient(missing).call("status", "demo", "t")
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(os.fspath(stale))
    s.close()
    with pytest.raises(NotRunningError):
        ControlClient(stale).call("status", "demo", "t")
    with pytest.raises(NotRunningError):
        next(ControlClient(stale).stream("subscribe", "demo", "t"))


def test_client_times_out_on_a_silent_daemon(tmp_path: Path) -> None:
    path = tmp_path / "silent.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(os.fspath(path))
    listener.listen(1)
    try:
        with pytest.raises(ControlError, match="did not answer in time"):
            ControlClient(path, timeout=0.2).call("status", "demo", "t")
    finally:
        listener.close()


def test_refusal_callback_failure_does_not_break_the_connection(tmp_path: Path) -> None:
    calls: list[str] = []
    lock = threading.Lock()

    def on_refusal(agency_id: str | None, reason: str, op: str) -> None:
        with lock:
            calls.append(reason)
        raise LockdownError("audit unavailable")

    server = ControlServer(
        tmp_path / "k.sock",
        authenticate=lambda a, t: t == "good",
        handlers={"status": lambda r: {"ok": 1}},
        on_refusal=on_refusal,
    )
    with server, ControlClient(server.socket_path) as client:
        with pytest.raises(AuthError):
            client.call("status", "demo", "bad")
        assert client.call("status", "demo", "good") == {"ok": 1}
    assert calls == ["authentication failed"]


def test_notify_listener_wait_for_times_out(tmp_path: Path) -> None:
    with NotifyListener(tmp_path / "n") as listener, pytest.raises(TimeoutError):
        listener.wait_for("READY", timeout=0.05)
    assert not (tmp_path / "n").exists()
