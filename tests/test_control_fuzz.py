"""Fuzzing the control socket of a real daemon subprocess.

Random frames (bytes, JSON of every type in every field, over-long lines, valid requests with
random tokens and agency ids), sent in random pieces, some connections closed abruptly. After
every example the daemon must still answer ``ping``; after all of them its thread count and
open file descriptors must come back to where they were.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import DaemonProc, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from koradaemon.control.client import ControlClient

MAX_REQUEST = 4096
CONTROL = f"""control: {{max_request_bytes: {MAX_REQUEST}, agency_slots: 64, preauth_slots: 32,
          auth_timeout_s: 10, read_timeout_s: 10}}"""
SAFE_OPS = ["ping", "status", "search", "get_chunk", "snapshots", "audit.verify", "no.such.op"]


@pytest.fixture(scope="module")
def fuzz_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    d = DaemonProc(tmp_path_factory.mktemp("fuzz"), extra=CONTROL)
    (d.root / "alpha" / "notes" / "seed.md").write_text("a note so that searches find something\n")
    d.start()
    yield d
    d.stop()


def _tokens(d: DaemonProc) -> dict[str, str]:
    return {a: (d.root / "run" / "tokens" / f"{a}.token").read_text().strip() for a in ("alpha", "beta")}


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
raw_numbers = st.sampled_from([b"1e999", b"-1e999", b"9" * 5000, b"1" * 400, b"NaN", b"Infinity", b"-0.0", b"1e-999"])


@st.composite
def frames(draw: st.DrawFn, tokens: dict[str, str]) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "request", "number", "huge", "blank"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300)).replace(b"\n", b"") + b"\n"
    if kind == "json":
        return json.dumps(draw(json_values)).encode() + b"\n"
    if kind == "number":
        field = draw(st.sampled_from(["id", "op", "agency_id", "token", "args"]))
        return b'{"' + field.encode() + b'": ' + draw(raw_numbers) + b', "op": "ping"}\n'
    if kind == "huge":
        return b"x" * draw(st.integers(MAX_REQUEST - 10, MAX_REQUEST * 3)) + b"\n"
    if kind == "blank":
        return b"\n"
    agency = draw(st.sampled_from(["alpha", "beta", "", "gamma", "../alpha", "alpha\x00", "\udcff"]))
    token = draw(st.one_of(st.sampled_from(list(tokens.values())), st.text(max_size=50)))
    request: dict[str, Any] = {
        "id": draw(json_scalars), "op": draw(st.sampled_from(SAFE_OPS)), "agency_id": agency, "token": token,
        "args": draw(st.dictionaries(st.sampled_from(["query", "limit", "root", "path", "offset", "length",
                                                      "sha256"]), json_values, max_size=4)),
    }
    for key in draw(st.lists(st.sampled_from(list(request)), max_size=2, unique=True)):
        request[key] = draw(json_values)  # a wrong type in a random field
    return json.dumps(request).encode() + b"\n"


@dataclass
class Session:
    data: bytes
    cuts: list[int]  # where the data is split into separate writes
    abrupt: bool  # close without reading (and possibly mid-frame)


@st.composite
def sessions(draw: st.DrawFn, tokens: dict[str, str]) -> Session:
    data = b"".join(draw(st.lists(frames(tokens), min_size=1, max_size=6)))
    if draw(st.booleans()):
        data += draw(st.binary(min_size=1, max_size=50)).replace(b"\n", b"")  # an unfinished frame
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=5)))
    return Session(data, cuts, draw(st.booleans()))


def _connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(os.fspath(path))
    s.settimeout(30)
    return s


def _play(path: Path, session: Session, ping: bytes) -> None:
    s = _connect(path)
    try:
        start = 0
        for cut in [*session.cuts, len(session.data)]:
            if cut > start:
                s.sendall(session.data[start:cut])
                start = cut
        if session.abrupt:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        s.sendall(b"\n" + ping)  # end any unfinished frame, then a good request on the same connection
        buf = b""
        while True:
            chunk = s.recv(65536)
            assert chunk, f"connection dropped; got {buf[-500:]!r}"
            buf += chunk
            lines = buf.split(b"\n")
            replies = [json.loads(line) for line in lines[:-1]]
            for reply in replies:
                assert isinstance(reply, dict) and isinstance(reply.get("ok"), bool), reply
            if any(r.get("id") == "fuzz-ping" for r in replies):
                last = next(r for r in replies if r.get("id") == "fuzz-ping")
                assert last == {"id": "fuzz-ping", "ok": True, "result": {"pong": True}}, last
                return
    finally:
        with contextlib.suppress(OSError):
            s.close()


def _threads_and_fds(pid: int) -> tuple[int, int]:
    proc = psutil.Process(pid)
    return proc.num_threads(), proc.num_fds()


def test_control_socket_survives_fuzzing_and_leaks_nothing(fuzz_daemon: DaemonProc) -> None:
    d = fuzz_daemon
    assert d.proc is not None
    path = d.root / "run" / "koradaemon.sock"
    tokens = _tokens(d)
    ping = json.dumps({"id": "fuzz-ping", "op": "ping", "agency_id": "alpha", "token": tokens["alpha"]}).encode()
    with ControlClient(path) as client:  # warm up: the handlers' lazily opened parts exist
        client.call("search", "alpha", tokens["alpha"], query="note")
    wait_for(lambda: d.client_call("status")["agencies"]["alpha"]["control"]["connections"] == 1,
             what="warm-up connection gone")
    baseline = _threads_and_fds(d.proc.pid)

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.lists(sessions(tokens), min_size=1, max_size=4))
    def run(batch: list[Session]) -> None:
        for session in batch:
            _play(path, session, ping + b"\n")
        with ControlClient(path, timeout=30) as client:  # a fresh client is served too
            assert client.call("ping", "alpha", tokens["alpha"]) == {"pong": True}

    run()
    assert d.proc.poll() is None, "the daemon died"

    def settled() -> bool:
        threads, fds = _threads_and_fds(d.proc.pid)  # type: ignore[union-attr]
        return threads <= baseline[0] and fds <= baseline[1]

    wait_for(settled, 30, 0.1, f"threads and fds back to {baseline}, now {_threads_and_fds(d.proc.pid)}")
    status = d.client_call("status")
    assert status["agencies"]["alpha"]["control"] == {"connections": 1, "subscribers": 0}
    assert not [e for e in d.log_events() if e.get("level") in ("error", "critical")]
