"""Shared test guards and helpers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.01, what: str = "") -> T:
    """Poll ``predicate`` until it returns a truthy value; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves any thread it started running, daemon threads included (every
    thread of koradaemon is a daemon thread, so ignoring them would let a leaked writer pass)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    leaked: list[threading.Thread] = []
    while time.monotonic() < deadline:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked:
            break
        time.sleep(0.02)
    assert not leaked, f"threads leaked: {leaked}"


@pytest.fixture(autouse=True)
def no_leaked_fds() -> Iterator[None]:
    """Fail a test that leaves file descriptors open that it opened."""
    def fds() -> set[int]:
        return {int(n) for n in _os.listdir("/proc/self/fd")}

    before = fds()
    yield
    import gc

    deadline = time.monotonic() + 5
    leaked: set[int] = set()
    while time.monotonic() < deadline:
        gc.collect()
        leaked = {fd for fd in fds() - before if _os.path.exists(f"/proc/self/fd/{fd}")}
        if not leaked:
            break
        time.sleep(0.02)
    assert not leaked, "fds leaked: " + ", ".join(
        f"{fd} -> {_readlink(fd)}" for fd in sorted(leaked))


def _readlink(fd: int) -> str:
    try:
        return _os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


# -- a real daemon in a subprocess -------------------------------------------------------------
import json as _json  # noqa: E402
import os as _os  # noqa: E402
import signal as _signal  # noqa: E402
import subprocess as _subprocess  # noqa: E402
import sys as _sys  # noqa: E402
from pathlib import Path as _Path  # noqa: E402
from typing import Any as _Any  # noqa: E402

BASE_CONFIG = """\
version: 1
shutdown_timeout_s: 20
log: {{level: debug, format: json}}
index: {{workers: 1, optimize_idle_s: 5}}  # the shipped default: bulk files go through the prep worker
watch: {{debounce_ms: 20}}
vault: {{enabled: {vault}, passphrase_file: secrets/pass, idle_lock_s: 60, auto_interval_s: 0,
        milestone_settle_s: 0, keep_last: 3}}
agencies:
  - agency_id: alpha
    roots: [alpha/notes]
    ignore: ["*.skip"]
    state_dirs: [alpha/state]
  - agency_id: beta
    roots: [beta/notes]
{extra}
"""


class DaemonProc:
    """koradaemon running in a subprocess on a data root in tmp_path."""

    def __init__(self, root: _Path, extra: str = "", env: dict[str, str] | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "koradaemon.yaml"
        if not self.config.exists():
            import importlib.util

            vault = "true" if importlib.util.find_spec("koradaemon.vault.snapshots") else "false"
            self.config.write_text(BASE_CONFIG.format(extra=extra, vault=vault))
        for d in ("alpha/notes", "beta/notes", "alpha/state", "secrets"):
            (root / d).mkdir(parents=True, exist_ok=True)
        secret = root / "secrets" / "pass"
        if not secret.exists():
            secret.write_text("correct horse battery staple\n")
            secret.chmod(0o600)
        self.env = dict(_os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        for var in ("NOTIFY_SOCKET", "KORA_RUNTIME_DIR", "RUNTIME_DIRECTORY", "KORA_DATA_ROOT", "STATE_DIRECTORY"):
            self.env.pop(var, None)
        self.proc: _subprocess.Popen[bytes] | None = None
        self.log = root / "daemon.out"

    def cli_cmd(self) -> list[str]:
        return [_sys.executable, "-m", "koradaemon", "-c", str(self.config), "--data-root", str(self.root)]

    def cli(self, *args: str, check: bool = False, timeout: float = 60) -> _subprocess.CompletedProcess[str]:
        cmd = [*self.cli_cmd(), *args]
        res = _subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env,
                              stdin=_subprocess.DEVNULL)
        if check and res.returncode != 0:
            pytest.fail(f"{args} failed ({res.returncode}): {res.stderr}")
        return res

    def start(self, wait_ready: bool = True) -> DaemonProc:
        cmd = [_sys.executable, "-m", "koradaemon", "-c", str(self.config), "--data-root", str(self.root), "run"]
        out = open(self.log, "ab")  # noqa: SIM115
        self.proc = _subprocess.Popen(cmd, stdout=out, stderr=_subprocess.STDOUT, stdin=_subprocess.DEVNULL,
                                      env=self.env)
        out.close()
        return self.started(wait_ready)

    def started(self, wait_ready: bool) -> DaemonProc:
        """After the launch: wait until it is ready (if asked); a daemon that never gets there is
        killed before the error goes up (nobody would stop it after the failing test)."""
        if wait_ready:
            try:
                self.wait_ready()
            except BaseException:
                assert self.proc is not None
                self.proc.kill()
                self.proc.wait()
                raise
        return self

    def client_call(self, op: str, agency: str = "alpha", **args: _Any) -> dict[str, _Any]:
        from koradaemon.control.client import ControlClient

        token = (self.root / "run" / "tokens" / f"{agency}.token").read_text().strip()
        with ControlClient(self.root / "run" / "koradaemon.sock", timeout=30) as c:
            return c.call(op, agency, token, **args)

    def status(self, agency: str = "alpha") -> dict[str, _Any] | None:
        """The status, or None while the daemon does not answer yet (socket absent or refusing);
        every other error (auth, protocol, lockdown) is raised, never hidden."""
        from koradaemon.errors import NotRunningError

        try:
            return self.client_call("status", agency)
        except (NotRunningError, FileNotFoundError, ConnectionRefusedError):
            return None

    def wait_ready(self, timeout: float = 30) -> dict[str, _Any]:
        def ready() -> dict[str, _Any] | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"daemon exited {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            st = self.status()
            return st if st and st.get("ready") and st["queue"]["idle"] else None

        return wait_for(ready, timeout, 0.05, "daemon ready")

    def search(self, query: str, agency: str = "alpha") -> list[dict[str, _Any]]:
        """The hits; an error (refused, lockdown, bad query, daemon gone) is raised, not read as "no hit"."""
        return list(self.client_call("search", agency, query=query)["hits"])

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(_signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except _subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail("daemon did not stop on SIGTERM")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def log_events(self) -> list[dict[str, _Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(_json.loads(line))
            except ValueError:
                continue
        return out


@pytest.fixture
def daemon(tmp_path: _Path) -> Iterator[DaemonProc]:
    d = DaemonProc(tmp_path)
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


# -- an unprivileged user, for permission tests (the suite runs as root, which reads anything) ------
import shutil as _shutil  # noqa: E402


@pytest.fixture
def unprivileged_user() -> Iterator[tuple[int, int]]:
    """A throw-away user created for the test (uid, gid); skipped where users cannot be created."""
    import pwd

    if _os.geteuid() != 0 or not _shutil.which("useradd"):
        pytest.skip("needs root and useradd to create an unprivileged user")
    name = f"kora{_os.getpid() % 100000}"
    made = _subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                           capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"useradd failed: {made.stderr.strip()}")
    try:
        pw = pwd.getpwnam(name)
        yield pw.pw_uid, pw.pw_gid
    finally:
        _subprocess.run(["userdel", name], capture_output=True)


def run_as_user(uid: int, gid: int, fn: Callable[[], str]) -> str:
    """Run ``fn`` in a forked child that dropped to ``uid``/``gid`` for good; return what it returned.

    A fork, not an exec: this checkout's interpreter may live under root's home, where the user
    cannot run it. An exception in the child fails the test with its text."""
    read_end, write_end = _os.pipe()
    pid = _os.fork()
    if pid == 0:
        code = 3
        try:
            _os.close(read_end)
            _os.setgroups([])
            _os.setgid(gid)
            _os.setuid(uid)
            try:
                out = "ok:" + fn()
            except BaseException as exc:
                out = f"error:{type(exc).__name__}: {exc}"
            _os.write(write_end, out.encode()[:60000])
            code = 0
        finally:
            _os._exit(code)
    _os.close(write_end)
    with _os.fdopen(read_end, "rb") as r:
        out = r.read().decode()
    _, status = _os.waitpid(pid, 0)
    assert _os.waitstatus_to_exitcode(status) == 0, out
    if not out.startswith("ok:"):
        pytest.fail(f"the child running as uid {uid} failed: {out}")
    return out[3:]


# -- a started index writer on a fresh database, for the index tests ------------------------------
@pytest.fixture
def writer_env(tmp_path: _Path) -> Iterator[tuple[_Path, _Any, list[_Any]]]:
    """(tmp_path, a started Writer on tmp_path/k.db, the list of what it committed); the root folder
    ``notes`` exists. The writer is stopped afterwards and must then be gone."""
    from koradaemon.index.db import open_db
    from koradaemon.index.writer import Writer

    db = tmp_path / "k.db"
    open_db(db).close()
    applied: list[_Any] = []
    writer = Writer(db, on_committed=applied.extend)
    writer.start()
    (tmp_path / "notes").mkdir()
    yield tmp_path, writer, applied
    writer.stop()
    assert writer.alive() is False
