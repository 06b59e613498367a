"""The daemon's side of the prep worker process (see :mod:`.prepworker`).

Bulk work (a crawl, a deep burst) spends about as much CPU preparing files (read, sha256, chunk,
decode, derived tokens) as SQLite spends inserting them. Done in a thread, both share one GIL;
done in this one child process, the preparing runs on the second core while the writer inserts.

The process is started with the indexer thread and on use after it ended (``subprocess`` runs a
fresh interpreter: nothing is forked from the threaded daemon), stopped after ``idle_s`` without
work and at stop. Only the indexer
thread that owns a :class:`PrepWorker` calls it, except :meth:`kill` (any thread). A process that
dies or answers nonsense is counted (``prep_worker_crashes``) and its batches are prepared in the
daemon's thread instead; after ``MAX_CRASHES`` it is not started again.
"""

from __future__ import annotations

import contextlib
import fcntl
import marshal
import os
import select
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import structlog

from .prepworker import HEADER, MAX_FRAME, Result

log = structlog.get_logger(__name__)

MAX_CRASHES = 3
PIPE_BYTES = 1 << 20
POLL_S = 0.2  # a wait for an answer looks at the stop flag this often
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # the child imports this very copy of the code
_CHILD_CODE = ("import sys; sys.path.insert(0, sys.argv[1]); from koradaemon.index.prepworker import main;"
               " sys.exit(main())")


class PrepWorker:
    def __init__(self, counters: Counter[str], stop: threading.Event, *, idle_s: float = 10.0) -> None:
        self.counters = counters
        self.stop_flag = stop
        self.idle_s = idle_s
        self.generation = 0  # bumped per process: answers owed by a dead one never come
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # start/stop/kill (kill may come from the stopping thread)
        self._last_use = time.monotonic()
        self._owed = 0  # requests sent, answers not yet read

    @property
    def usable(self) -> bool:
        return self.counters["prep_worker_crashes"] < MAX_CRASHES and not self.stop_flag.is_set()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    def send(self, items: list[tuple[object, ...]]) -> int | None:
        """Send one request; its generation (to :meth:`receive` with), or None: prepare it yourself."""
        if not self.usable:
            return None
        proc = self._proc or self._start()
        if proc is None or proc.stdin is None:
            return None
        try:
            data = marshal.dumps(items)
            _write_all(proc.stdin.fileno(), HEADER.pack(len(data)) + data)
        except (OSError, ValueError) as exc:
            self._crashed(f"send: {type(exc).__name__}")
            return None
        self._owed += 1
        self._last_use = time.monotonic()
        return self.generation

    def warm(self) -> None:
        if self._proc is None and self.usable:
            self._start()
            self._last_use = time.monotonic()

    def ready(self, generation: int, wait: float = 0.0) -> bool:
        """The next answer can be read without waiting (or will never come: receive says so at once);
        waits up to ``wait`` seconds for it."""
        proc = self._proc
        if generation != self.generation or proc is None or proc.stdout is None:
            return True
        try:
            return bool(select.select([proc.stdout], [], [], wait)[0])
        except (OSError, ValueError):
            return True

    def receive(self, generation: int, count: int) -> list[Result] | None:
        """The answer to the oldest request sent, ``count`` results; None: prepare them yourself
        (the process died, answered nonsense, or the daemon is stopping)."""
        proc = self._proc
        if generation != self.generation or proc is None or proc.stdout is None:
            return None
        try:
            while not select.select([proc.stdout], [], [], POLL_S)[0]:
                if self.stop_flag.is_set():
                    self.counters["prep_stopped_busy"] += 1
                    self.kill()
                    return None
            fd = proc.stdout.fileno()
            (n,) = HEADER.unpack(_read_exactly(fd, HEADER.size))
            if n > MAX_FRAME:
                raise ValueError("answer too big")
            results = marshal.loads(_read_exactly(fd, n))
            if not isinstance(results, list) or len(results) != count:
                raise ValueError("answer does not fit the request")
        except (OSError, ValueError, EOFError, TypeError) as exc:
            if self.stop_flag.is_set():  # ended by the stopping thread (Indexer.stop): no crash
                self.counters["prep_stopped_busy"] += 1
                self.close(1.0)
            elif generation == self.generation:
                self._crashed(f"receive: {type(exc).__name__}: {exc}")
            return None
        self._owed -= 1
        self._last_use = time.monotonic()
        return results

    def tick(self) -> None:
        """Nothing to do just now: stop the process once it has been idle ``idle_s`` (frees its memory)."""
        if self._proc is not None and not self._owed and time.monotonic() - self._last_use >= self.idle_s:
            self.close(1.0)

    def close(self, timeout: float) -> None:
        """End the process: end of input, then a kill if it has not exited within ``timeout``."""
        with self._lock:
            proc, self._proc = self._proc, None
            self.generation += 1
            self._owed = 0
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _close_pipes(proc)

    def kill(self) -> None:
        """End the process now (any thread); an answer being read gets end of file."""
        with self._lock:
            proc = self._proc
            if proc is not None:
                proc.kill()

    def _start(self) -> subprocess.Popen[bytes] | None:
        with self._lock:
            try:
                self._proc = subprocess.Popen([sys.executable, "-P", "-c", _CHILD_CODE, _PACKAGE_PARENT],
                                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                                              close_fds=True, cwd="/")
            except OSError as exc:
                self.counters["prep_worker_crashes"] += 1
                log.error("prep_worker_cannot_start", error=str(exc))
                return None
            for pipe in (self._proc.stdin, self._proc.stdout):  # bigger reads: fewer wake-ups of both sides
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
            self.generation += 1
            self._owed = 0
            self.counters["prep_worker_starts"] += 1
            return self._proc

    def _crashed(self, why: str) -> None:
        self.counters["prep_worker_crashes"] += 1
        proc = self._proc
        code = proc.poll() if proc is not None else None
        log.error("prep_worker_failed", why=why, exit_code=code, crashes=self.counters["prep_worker_crashes"],
                  prepared_here=True)
        if proc is not None:
            proc.kill()
        self.close(1.0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exactly(fd: int, n: int) -> bytes:
    """``n`` bytes from the pipe (unbuffered: select sees all that is unread); EOFError at its end."""
    parts: list[bytes] = []
    while n:
        part = os.read(fd, min(n, 1 << 20))
        if not part:
            raise EOFError("the prep worker's answer ended early")
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def child_rss(pid: int | None) -> int:
    """Resident bytes of the prep worker (0 when none runs); for status and the benches."""
    if pid is None:
        return 0
    import psutil  # as status reads the daemon's own; imported on that path only

    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:  # it ended in between
        return 0
