"""One run of the agent process: spawn in its own group, pump its output, stop the whole group.

Exit is observed with ``waitid(WNOWAIT)`` by a watcher thread, so the group leader stays an unreaped
zombie until the rest of its group has been killed: the group id cannot be reused in between.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import psutil
import structlog

from ..errors import SupervisorError
from .pidfile import GroupRecord, group_members, remove_record, wait_gone, write_record
from .strays import DescendantTracker

log = structlog.get_logger(__name__)

_MAX_LINE = 16 * 1024
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_HAS_WAITID = hasattr(os, "waitid") and hasattr(os, "WNOWAIT")


class AgentProcess:
    """A single spawned agent. Not restartable: the supervisor makes a new one per start."""

    def __init__(
        self,
        *,
        command: Sequence[str],
        workdir: Path,
        env: Mapping[str, str],
        pidfile: Path,
        ring_lines: int = 200,
        on_exit: Callable[[], None] | None = None,
        on_line: Callable[[str, str], None] | None = None,
        user: int | None = None,
        group: int | None = None,
    ) -> None:
        if not command:
            raise SupervisorError("agent command is empty")
        self.command = list(command)
        self.workdir = workdir
        self.env = dict(env)
        self.pidfile = pidfile
        self.ring: deque[str] = deque(maxlen=ring_lines)
        self._ring_lock = threading.Lock()
        self._on_exit = on_exit
        self._proc: subprocess.Popen[bytes] | None = None
        self._exited = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stop_lock = threading.Lock()
        self.returncode: int | None = None
        self.started_at = 0.0
        self.ended_at: float | None = None
        self._record: GroupRecord | None = None
        self._user = user
        self._group = group
        self._on_line = on_line
        self.descendants = DescendantTracker()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        """Spawn the agent; raises :class:`SupervisorError` if the command cannot be executed."""
        try:
            self._proc = subprocess.Popen(
                self.command,
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
                user=self._user,
                group=self._group,
                extra_groups=[] if self._user is not None else None,
            )
        except PermissionError as exc:
            hint = "running it as agent.user needs root or CAP_SETUID/CAP_SETGID" if self._user is not None else None
            raise SupervisorError(f"cannot start agent {self.command[0]!r}: {exc}", hint=hint) from exc
        except OSError as exc:
            raise SupervisorError(f"cannot start agent {self.command[0]!r}: {exc}") from exc
        self.started_at = time.monotonic()
        self._write_pidfile()
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._spawn_thread(self._pump, "stdout", self._proc.stdout)
        self._spawn_thread(self._pump, "stderr", self._proc.stderr)
        self._spawn_thread(self._watch_exit, "exit")
        log.info("agent_spawned", pid=self._proc.pid, argv0=self.command[0])

    def _spawn_thread(self, target: Callable[..., None], name: str, *args: object) -> None:
        t = threading.Thread(target=target, args=(name, *args), name=f"agent-{name}-{self.pid}", daemon=True)
        t.start()
        self._threads.append(t)

    def _write_pidfile(self) -> None:
        assert self._proc is not None
        try:
            create_time = psutil.Process(self._proc.pid).create_time()
        except psutil.Error:
            create_time = time.time()
        self._record = GroupRecord(self._proc.pid, self._proc.pid, create_time, self.command[0])
        write_record(self.pidfile, self._record)

    def _pump(self, stream: str, pipe: IO[bytes]) -> None:
        """Forward each output line to the log and the ring until the pipe closes."""
        with pipe:
            for raw in iter(lambda: pipe.readline(_MAX_LINE), b""):
                line = _ANSI.sub("", raw.decode("utf-8", "replace").rstrip("\r\n"))
                with self._ring_lock:
                    self.ring.append(f"{stream}: {line}")
                log.info("agent_output", stream=stream, pid=self.pid, line=line)
                if self._on_line is not None:
                    try:
                        self._on_line(stream, line)
                    except Exception:  # a bad line must not stop the pump
                        log.exception("agent_output_hook_failed")

    def _watch_exit(self, _name: str) -> None:
        assert self._proc is not None
        try:
            if _HAS_WAITID:
                os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOWAIT)
            else:  # pragma: no cover - platforms without waitid reap here
                self._proc.wait()
        except ChildProcessError:
            pass
        self.ended_at = time.monotonic()
        self._exited.set()
        if self._on_exit is not None:
            self._on_exit()

    def exited(self) -> bool:
        """True once the group leader has exited (it may still await reaping)."""
        return self._exited.is_set()

    def wait_exit(self, timeout: float) -> bool:
        return self._exited.wait(timeout)

    def tail(self, n: int) -> list[str]:
        with self._ring_lock:
            return list(self.ring)[-n:] if n > 0 else []

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to the agent's process group; False if the group is gone."""
        if self._proc is None or self.returncode is not None:
            return False
        try:
            os.killpg(self._proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def stop(self, drain_s: float) -> int | None:
        """SIGTERM the group, wait up to ``drain_s``, SIGKILL the group, reap. Idempotent.

        Also used after the leader exited on its own, to end what is left of its group.
        Returns the leader's exit status as :attr:`subprocess.Popen.returncode` (negative = signal).
        """
        with self._stop_lock:
            if self._proc is None or self.returncode is not None:
                return self.returncode
            if not self._exited.is_set():
                self.descendants.record(self._proc.pid)  # last look at who it spawned, before they scatter
                self.signal_group(signal.SIGTERM)
                if not self._exited.wait(max(drain_s, 0.0)):
                    log.warning("agent_drain_expired", pid=self._proc.pid, drain_s=drain_s)
            self.signal_group(signal.SIGKILL)
            self._exited.wait(5.0)
            if self._record is not None:  # SIGKILL is asynchronous: wait until the members are dead
                wait_gone(group_members(self._record), 5.0)
            # Helpers in their own session or group (OpenClaw's spawn broker): not reached by the group kill.
            self.descendants.end_all(min(max(drain_s, 0.0), 5.0))
            try:
                self.returncode = self._proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                log.error("agent_unkillable", pid=self._proc.pid)
                return None
            for t in self._threads:
                if t is not threading.current_thread():
                    t.join(timeout=1.0)
            remove_record(self.pidfile)
            return self.returncode

    def exit_info(self, *, reason: str, was_ready: bool) -> dict[str, object]:
        """Audit-ready facts about this run (integers only, as KBL-1 requires)."""
        return {
            "pid": self.pid,
            "returncode": self.returncode,
            "reason": reason,
            "uptime_ms": int(((self.ended_at or time.monotonic()) - self.started_at) * 1000),
            "was_ready": was_ready,
        }

    def kill_now(self) -> None:
        """Last resort from another thread: SIGKILL the group without waiting."""
        with contextlib.suppress(Exception):
            self.signal_group(signal.SIGKILL)
