"""The WebSocket event stream with real clients: tokens, roles, agencies, file text, slow consumers,
100 concurrent clients, TLS, and the daemon's own stream (events carry their audit seq and hash)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DaemonProc, wait_for
from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from koradaemon.events import EventBus
from koradaemon.streams.access import parse_clients
from koradaemon.streams.websocket import WebSocketStream

CLIENTS = ["view:viewer:alpha", "aud:auditor:alpha", "root:admin", "both:viewer:alpha,beta"]
TOKENS = {"view": "tok-view-1", "aud": "tok-aud-2", "root": "tok-root-3", "both": "tok-both-4"}
H = "ab" * 32


def make_stream(bus: EventBus, buffer_events: int = 1000, tls: ssl.SSLContext | None = None,
                max_clients: int = 256) -> WebSocketStream:
    return WebSocketStream(bus, host="127.0.0.1", port=0, clients=parse_clients(CLIENTS, ["alpha", "beta"]),
                           tokens=TOKENS, agencies=["alpha", "beta"], buffer_events=buffer_events,
                           max_clients=max_clients, tls=tls, close_timeout=10)


@pytest.fixture
def stream() -> Iterator[tuple[EventBus, WebSocketStream]]:
    bus = EventBus()
    ws = make_stream(bus)
    ws.start()
    try:
        yield bus, ws
    finally:
        ws.stop(time.monotonic() + 10)


def url(ws: WebSocketStream, query: str = "", scheme: str = "ws") -> str:
    return f"{scheme}://127.0.0.1:{ws.port}/events{'?' + query if query else ''}"


def client(ws: WebSocketStream, token: str, query: str = "", **kw: object) -> ClientConnection:
    c = connect(url(ws, query), additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=20,
                legacy=True, **kw)  # type: ignore[arg-type]
    hello = json.loads(c.recv(timeout=20))
    assert hello["type"] == "subscribed"
    return c


def recv_json(c: ClientConnection, timeout: float = 20) -> dict[str, object]:
    return dict(json.loads(c.recv(timeout=timeout)))


def refused_status(ws: WebSocketStream, token: str | None, query: str = "") -> int:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    with pytest.raises(InvalidStatus) as info, connect(url(ws, query), additional_headers=headers, open_timeout=20):
        pass
    return int(info.value.response.status_code)


def test_wrong_or_missing_token_is_401(stream: tuple[EventBus, WebSocketStream]) -> None:
    _, ws = stream
    assert refused_status(ws, "not-a-token") == 401
    assert refused_status(ws, None) == 401
    assert refused_status(ws, "") == 401
    assert ws.stats.refused == 3


def test_wrong_role_and_other_agency_are_403(stream: tuple[EventBus, WebSocketStream]) -> None:
    _, ws = stream
    assert refused_status(ws, TOKENS["view"], "audit=1") == 403  # a viewer asking for audit records
    assert refused_status(ws, TOKENS["view"], "agency=beta") == 403  # an agency not granted
    assert refused_status(ws, TOKENS["aud"], "agency=alpha&agency=beta") == 403


def test_viewer_sees_its_agency_only_and_never_file_text_or_audit(stream: tuple[EventBus, WebSocketStream]) -> None:
    bus, ws = stream
    view, aud, root = client(ws, TOKENS["view"]), client(ws, TOKENS["aud"], "audit=1"), client(ws, TOKENS["root"])
    try:
        wait_for(lambda: ws.stats.clients == 3, 20, what="three clients")
        bus.emit("beta", "index", {"path": "beta-secret.md", "text": "beta text"})
        bus.emit("alpha", "secret_set", {"name": "k"}, seq=1, hash=H)
        bus.publish("alpha", {"v": 1, "type": "audit", "agency_id": "alpha", "ts": "2026-01-01T00:00:00Z",
                              "seq": 2, "hash": H, "data": {"record": {"seq": 2}}})
        bus.emit("alpha", "index", {"path": "a.md", "text": "alpha text", "snippet": "alpha"}, seq=3, hash=H)
        got = recv_json(view)
        assert got["type"] == "index" and got["data"] == {"path": "a.md"} and got["seq"] == 3
        assert [recv_json(aud)["type"] for _ in range(3)] == ["secret_set", "audit", "index"]
        root_got = [recv_json(root) for _ in range(4)]
        assert [e["agency_id"] for e in root_got] == ["beta", "alpha", "alpha", "alpha"]
        assert root_got[-1]["data"] == {"path": "a.md", "text": "alpha text", "snippet": "alpha"}
        with pytest.raises(TimeoutError):
            view.recv(timeout=0.3)  # nothing else reached the viewer
    finally:
        for c in (view, aud, root):
            c.close()


def test_slow_consumer_is_dropped_with_a_reason_and_others_get_everything() -> None:
    bus = EventBus()
    ws = make_stream(bus, buffer_events=200)
    ws.start()
    slow = client(ws, TOKENS["view"], max_size=None)
    fast = client(ws, TOKENS["both"])
    received: list[int] = []

    def read_fast() -> None:
        with pytest.raises(ConnectionClosed):
            while True:
                received.append(int(json.loads(fast.recv())["data"]["n"]))

    reader = threading.Thread(target=read_fast)
    reader.start()
    try:
        pad = "p" * 4000
        n = 0
        slowest_publish = 0.0
        while ws.stats.slow_dropped == 0:
            assert n < 200_000, "the slow consumer was never dropped"
            for _ in range(100):  # in steps the fast reader keeps up with
                t0 = time.monotonic()
                bus.emit("alpha", "index", {"n": n, "pad": pad})
                slowest_publish = max(slowest_publish, time.monotonic() - t0)
                n += 1
            wait_for(lambda n=n: len(received) >= n, 60, what="the fast client keeps up")  # type: ignore[misc]
        assert received == list(range(n))
        assert ws.stats.slow_dropped == 1 and ws.stats.clients == 1
        # the slow client reads late: what was sent, then the close frame naming the cause
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                slow.recv(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert "slow consumer" in closed.value.rcvd.reason
        print(f"slowest publish call: {slowest_publish * 1000:.2f} ms over {n} events")
    finally:
        slow.close()
        fast.close()
        reader.join(10)
        ws.stop(time.monotonic() + 10)


def test_a_hundred_concurrent_clients_each_get_every_event(stream: tuple[EventBus, WebSocketStream]) -> None:
    bus, ws = stream
    n_clients, n_events = 100, 200

    async def run() -> list[list[int]]:
        conns = [await aconnect(url(ws), additional_headers={"Authorization": f"Bearer {TOKENS['both']}"},
                                open_timeout=60) for _ in range(n_clients)]
        try:
            for c in conns:
                assert json.loads(await c.recv())["type"] == "subscribed"
            threading.Thread(target=lambda: [bus.emit("beta" if i % 2 else "alpha", "index", {"n": i})
                                             for i in range(n_events)]).start()

            async def collect(c: object) -> list[int]:
                out = []
                for _ in range(n_events):
                    out.append(int(json.loads(await asyncio.wait_for(c.recv(), 60))["data"]["n"]))  # type: ignore[attr-defined]
                return out

            return list(await asyncio.gather(*(collect(c) for c in conns)))
        finally:
            for c in conns:
                await c.close()

    results = asyncio.run(run())
    assert len(results) == n_clients and all(r == list(range(n_events)) for r in results)
    assert ws.stats.slow_dropped == 0


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    bus = EventBus()
    ws = make_stream(bus, tls=server_ctx)
    ws.start()
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        with connect(url(ws, scheme="wss"), additional_headers={"Authorization": f"Bearer {TOKENS['view']}"},
                     ssl=ctx, open_timeout=20) as c:
            assert json.loads(c.recv(timeout=20))["type"] == "subscribed"
            bus.emit("alpha", "index", {"path": "tls.md"})
            assert json.loads(c.recv(timeout=20))["data"] == {"path": "tls.md"}
        with pytest.raises(Exception), connect(  # noqa: B017 - plain ws:// to a TLS port fails, one way or another
                url(ws), additional_headers={"Authorization": f"Bearer {TOKENS['view']}"}, open_timeout=5):
            pass
    finally:
        ws.stop(time.monotonic() + 10)


WS_CONFIG = """websocket:
  enabled: true
  port: 0
  clients: ["dash:viewer:alpha", "siem:auditor:alpha"]
"""


def test_daemon_streams_acknowledged_changes_with_their_audit_chain(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path, extra=WS_CONFIG)
    d.start()
    try:
        assert d.client_call("status")["threads"]["websocket"] is True
        port = int((tmp_path / "run" / "websocket.port").read_text())
        token = {n: (tmp_path / "run" / "ws-tokens" / f"{n}.token").read_text().strip() for n in ("dash", "siem")}
        assert (tmp_path / "run" / "ws-tokens" / "dash.token").stat().st_mode & 0o777 == 0o600
        base = f"ws://127.0.0.1:{port}/events"
        with connect(base, additional_headers={"Authorization": f"Bearer {token['dash']}"}) as dash, \
                connect(base + "?audit=1", additional_headers={"Authorization": f"Bearer {token['siem']}"}) as siem:
            assert json.loads(dash.recv(timeout=20))["type"] == "subscribed"
            assert json.loads(siem.recv(timeout=20))["type"] == "subscribed"
            (tmp_path / "alpha" / "notes" / "ws.md").write_text("streamed over websocket: quince\n")
            (tmp_path / "beta" / "notes" / "other.md").write_text("beta's change\n")
            ev = json.loads(dash.recv(timeout=30))
            while ev["type"] != "index":
                ev = json.loads(dash.recv(timeout=30))
            assert ev["agency_id"] == "alpha" and ev["data"]["path"] == "ws.md" and isinstance(ev["seq"], int)
            audit = json.loads(siem.recv(timeout=30))
            while not (audit["type"] == "audit" and audit["seq"] == ev["seq"]):
                audit = json.loads(siem.recv(timeout=30))
            assert audit["hash"] == ev["hash"] and audit["data"]["record"]["data"]["path"] == "ws.md"
            assert d.stop() == 0
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    msg = json.loads(dash.recv(timeout=30))
                    assert msg["agency_id"] == "alpha"  # never beta's change
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def test_the_documented_client_runs_as_written(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "streams.md").read_text()
    snippet = doc.split("```python\n", 1)[1].split("```", 1)[0]
    d = DaemonProc(tmp_path, extra=WS_CONFIG.replace('"dash:viewer:alpha"', '"dashboard:viewer:alpha"'))
    d.start()
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", snippet], cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()))
    reader.start()
    try:
        wait_for(lambda: any("subscribed" in x for x in lines), 30, 0.05, "the client subscribed")
        (tmp_path / "alpha" / "notes" / "doc.md").write_text("documented client: medlar\n")
        wait_for(lambda: any("'doc.md'" in x and "'index'" in x for x in lines), 30, 0.05, "the index event")
        assert d.stop() == 0
        assert proc.wait(30) == 0  # the loop ends when the daemon closes the stream
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        if proc.stdout is not None:
            proc.stdout.close()
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def test_audit_records_are_decoded_only_while_an_auditor_listens(stream: tuple[EventBus, WebSocketStream]) -> None:
    bus, ws = stream
    assert not bus.wants_audit("alpha")
    view = client(ws, TOKENS["view"])
    try:
        wait_for(lambda: ws.stats.clients == 1, 20, what="viewer connected")
        assert not bus.wants_audit("alpha")
        aud = client(ws, TOKENS["aud"], "audit=1")
        wait_for(lambda: bus.wants_audit("alpha"), 20, what="auditor connected")
        aud.close()
        wait_for(lambda: not bus.wants_audit("alpha"), 20, what="auditor gone")
    finally:
        view.close()
