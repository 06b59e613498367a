"""sd_notify against a real AF_UNIX datagram socket, from a real child process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for

from koradaemon.service.notify import Notifier, watchdog_usec
from koradaemon.service.notify_listener import NotifyListener
from koradaemon.service.watchdog_ping import WatchdogPinger

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifyListener]:
    with NotifyListener(tmp_path / "notify") as listener:
        yield listener


def run_child(code: str, env_extra: dict[str, str], *, stdin: int | None = None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    env.update(env_extra)
    env["PYTHONPATH"] = os.fspath(REPO)
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, stdin=stdin, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_child_sends_lifecycle_states(notify_socket: NotifyListener) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    child = run_child(
        """
        from koradaemon.service.notify import Notifier
        n = Notifier.from_env()
        assert n.enabled
        n.status("opening database")
        n.ready("2 agencies, 10 files")
        n.reloading()
        n.ready()
        n.stopping("draining")
        """,
        {"NOTIFY_SOCKET": notify_socket.address},
    )
    _out, err = child.communicate(timeout=30)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert child.returncode == 0, err.decode()
    got = [notify_socket.recv() for _ in range(5)]
    assert got[0] == {"STATUS": "opening database"}
    assert got[1] == {"READY": "1", "STATUS": "2 agencies, 10 files"}
    assert got[2] is not None and set(got[2]) == {"RELOADING", "MONOTONIC_USEC"} and got[2]["RELOADING"] == "1"
    assert before <= int(got[2]["MONOTONIC_USEC"]) <= after
    assert got[3] == {"READY": "1"}
    assert got[4] == {"STOPPING": "1", "STATUS": "draining"}


def test_abstract_socket_address() -> None:
    name = f"@kora-test-{os.getpid()}-{time.monotonic_ns()}"
    ns = NotifyListener(name)
    try:
        child = run_child(
            "from koradaemon.service.notify import Notifier; assert Notifier.from_env().ready('up')",
            {"NOTIFY_SOCKET": name},
        )
        child.communicate(timeout=30)
        assert child.returncode == 0
        assert ns.recv() == {"READY": "1", "STATUS": "up"}
    finally:
        ns.close()


def test_status_is_one_line(notify_socket: NotifyListener) -> None:
    n = Notifier(notify_socket.address)
    assert n.status("line one\nline two")
    assert notify_socket.recv() == {"STATUS": "line one line two"}
    n.close()


def test_no_socket_is_a_no_op() -> None:
    n = Notifier.from_env({})
    assert not n.enabled
    assert n.ready("x") is False
    assert n.watchdog_interval() is None


def test_send_errors_are_logged_not_raised(tmp_path: Path) -> None:
    n = Notifier(os.fspath(tmp_path / "nobody-listens"))
    assert n.ready() is False
    assert n.watchdog() is False
    n.close()


def test_unset_environment_scrubs_variables(notify_socket: NotifyListener) -> None:
    env = {"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}
    n = Notifier.from_env(env, unset_environment=True)
    assert env == {}
    assert n.watchdog_interval() == 2.0
    assert n.ready()
    assert notify_socket.recv() == {"READY": "1"}
    n.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30_000_000),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "SELF"}, 30_000_000),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "junk"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_usec_is_for_us_only(env: dict[str, str], expected: int | None) -> None:
    env = {k: (str(os.getpid()) if v == "SELF" else v) for k, v in env.items()}
    assert watchdog_usec(env, os.getpid()) == expected


def test_pinger_pings_at_half_interval_and_respects_checks(notify_socket: NotifyListener) -> None:
    now = [100.0]
    healthy = [True]
    n = Notifier(notify_socket.address, watchdog_usec=2_000_000)
    pinger = WatchdogPinger(n, checks=[lambda: healthy[0]], clock=lambda: now[0])
    assert pinger.interval == 1.0
    assert pinger.seconds_until_due() == 0.0
    assert pinger.tick() is True
    assert notify_socket.recv() == {"WATCHDOG": "1"}
    now[0] = 100.6
    assert pinger.tick() is False
    assert pinger.seconds_until_due() == pytest.approx(0.4)
    now[0] = 101.0
    healthy[0] = False
    assert pinger.tick() is False  # a failing check withholds the ping
    healthy[0] = True
    assert pinger.tick() is True
    assert notify_socket.recv() == {"WATCHDOG": "1"}
    assert notify_socket.recv(timeout=0.05) is None
    assert pinger.pings == 2
    n.close()


def test_pinger_disabled_without_watchdog(notify_socket: NotifyListener) -> None:
    pinger = WatchdogPinger(Notifier(notify_socket.address))
    assert not pinger.enabled
    assert pinger.seconds_until_due() is None
    assert pinger.tick() is False


def test_pings_stop_when_main_loop_hangs(notify_socket: NotifyListener) -> None:
    child = run_child(
        """
        import sys, threading
        from koradaemon.service.notify import Notifier
        from koradaemon.service.watchdog_ping import WatchdogPinger
        pinger = WatchdogPinger(Notifier.from_env())
        assert pinger.interval == 0.05, pinger.interval
        wake = threading.Event()
        while pinger.pings < 5:                  # the main loop
            wake.wait(pinger.seconds_until_due())
            pinger.tick()
        print("hanging", flush=True)
        sys.stdin.read()                         # the main loop hangs here
        """,
        {"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "100000"},
        stdin=subprocess.PIPE,
    )
    try:
        stamps = []
        for _ in range(5):
            assert notify_socket.recv() == {"WATCHDOG": "1"}
            stamps.append(time.monotonic())
        assert child.stdout is not None
        assert child.stdout.readline() == b"hanging\n"
        assert notify_socket.recv(timeout=0.3) is None  # six intervals without a ping
        assert stamps[-1] - stamps[0] >= 4 * 0.05 * 0.8
    finally:
        child.kill()
        child.communicate(timeout=30)
    wait_for(lambda: child.poll() is not None)
