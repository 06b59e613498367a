"""subscribe over the control socket: live events, agency isolation, hang-ups and stop."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for

from koradaemon.control.client import ControlClient
from koradaemon.control.handlers import subscribe_handler
from koradaemon.control.protocol import Request
from koradaemon.control.server import ControlServer
from koradaemon.errors import AuthError, ControlError, DataError, UsageError
from koradaemon.events import EventBus
from koradaemon.service.tokens import TokenStore


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.bus = EventBus(idle_s=0.02)
        self.tokens = TokenStore(tmp_path / "tokens")
        self.token_a = self.tokens.ensure("alpha")
        self.token_b = self.tokens.ensure("beta")
        self.path = tmp_path / "k.sock"
        self.server = ControlServer(
            self.path,
            authenticate=self.tokens.check,
            handlers={"subscribe": subscribe_handler(self.bus), "count": self.count, "failing": self.failing},
            on_refusal=lambda agency, reason, op: self.refusals.append((agency, reason, op)),
        )
        self.refusals: list[tuple[str | None, str, str]] = []

    @staticmethod
    def count(req: Request) -> Iterator[dict[str, Any]]:
        for i in range(int(req.args["n"])):
            yield {"i": i}

    @staticmethod
    def failing(req: Request) -> Iterator[dict[str, Any]]:
        yield {"i": 0}
        raise DataError("source vanished")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    e.server.start()
    yield e
    e.bus.close()
    e.server.stop()


def test_finite_stream_ends_with_end_line(env: Env) -> None:
    events = list(ControlClient(env.path).stream("count", "alpha", env.token_a, n=5))
    assert events == [{"i": i} for i in range(5)]


def test_stream_error_after_events(env: Env) -> None:
    got: list[dict[str, Any]] = []
    with pytest.raises(DataError, match="source vanished"):
        got.extend(ControlClient(env.path).stream("failing", "alpha", env.token_a))
    assert got == [{"i": 0}]


def test_subscribe_receives_published_events_of_its_agency(env: Env) -> None:
    stream = ControlClient(env.path).stream("subscribe", "alpha", env.token_a, idle_timeout=10)
    received: list[dict[str, Any]] = []

    def consume() -> None:
        for event in stream:
            received.append(event)
            if len(received) == 3:
                break
        stream.close()

    t = threading.Thread(target=consume)
    t.start()
    wait_for(lambda: env.bus.subscriber_count("alpha") == 1, what="subscription registered")
    env.bus.publish("beta", {"type": "index", "path": "secret.md"})
    for i in range(3):
        env.bus.publish("alpha", {"type": "index", "n": i})
    t.join(10)
    assert received == [{"type": "index", "n": i} for i in range(3)]
    wait_for(lambda: env.bus.subscriber_count("alpha") == 0, what="hang-up noticed, subscription closed")
    wait_for(lambda: env.server.client_count == 0, what="connection thread ended")


def test_subscribe_with_wrong_token_or_other_agency_is_refused(env: Env) -> None:
    with pytest.raises(AuthError):
        next(ControlClient(env.path).stream("subscribe", "alpha", env.token_b))
    with pytest.raises(AuthError):
        next(ControlClient(env.path).stream("subscribe", "alpha", env.token_a, agency_id="beta"))
    with pytest.raises(UsageError):
        next(ControlClient(env.path).stream("subscribe", "alpha", env.token_a, buffer=0))
    assert env.bus.subscriber_count() == 0
    assert [(a, r.split(":")[0]) for a, r, _ in env.refusals] == [
        ("alpha", "authentication failed"),
        ("alpha", "forbidden"),
    ]


def test_stream_accounts_for_every_event_dropped_or_delivered(env: Env) -> None:
    stream = ControlClient(env.path).stream("subscribe", "alpha", env.token_a, idle_timeout=10, buffer=2)
    first: list[dict[str, Any]] = []
    t = threading.Thread(target=lambda: first.append(next(stream)))
    t.start()
    wait_for(lambda: env.bus.subscriber_count("alpha") == 1, what="subscription registered")
    for i in range(500):
        env.bus.publish("alpha", {"n": i})
    t.join(10)
    got = first[:]
    while got[-1] != {"n": 499}:
        got.append(next(stream))
    stream.close()
    delivered = [e["n"] for e in got if "n" in e]
    dropped = sum(e["count"] for e in got if e.get("type") == "dropped")
    assert delivered == sorted(delivered)
    assert len(delivered) + dropped == 500


def test_server_stop_ends_open_streams(tmp_path: Path) -> None:
    e = Env(tmp_path)
    e.server.start()
    stream = ControlClient(e.path).stream("subscribe", "alpha", e.token_a, idle_timeout=10)
    outcome: list[BaseException] = []

    def consume() -> None:
        try:
            list(stream)
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=consume)
    t.start()
    wait_for(lambda: e.bus.subscriber_count("alpha") == 1)
    e.server.stop()
    t.join(10)
    assert not t.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ControlError)
    assert "stopping" in str(outcome[0])
    wait_for(lambda: e.bus.subscriber_count() == 0, what="subscription closed by the server")
    assert not e.path.exists()
