"""The control server: a 0600 Unix socket, one listener thread and one thread per client.

Requests are authenticated with the agency's token before any handler runs. Malformed input,
failed authentication, unknown operations and forbidden requests get a JSON error and are
reported through ``on_refusal`` (wired to the audit log by the daemon), rate-limited per agency.

No single local process can starve the server: connections hold slots (see :mod:`.slots`:
a small pre-auth pool, per-agency slots, an operator reserve), every read has a time limit
(:class:`.connection.Timeouts`), the accept backlog is bounded, and each connection runs in its
own thread, so a slow handler holds up only its own client; heavy operations (searches,
snapshots, full verifies) run at most ``heavy_per_agency`` at a time per agency.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import structlog

from ..errors import BusyError, ControlError
from .bind import bind_private
from .connection import Connection, Handler, Timeouts, peer_credentials
from .protocol import MAX_REQUEST_BYTES, Peer
from .refusals import RefusalFn, RefusalReporter
from .slots import HeavyGate, SlotLimits, Slots

log = structlog.get_logger(__name__)

ACCEPT_POLL_S = 1.0
ACCEPT_BATCH = 64  # connections taken from the backlog per wake-up
DEFAULT_SLOTS = SlotLimits()
DEFAULT_TIMEOUTS = Timeouts()


def local_operator(peer: Peer | None) -> bool:
    """The default operator test: root or the daemon's own user."""
    return peer is not None and peer.uid in (0, os.geteuid())


class ControlServer:
    def __init__(
        self,
        socket_path: Path,
        *,
        authenticate: Callable[[str, str], bool],
        handlers: Mapping[str, Handler],
        on_refusal: RefusalFn | None = None,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        slots: SlotLimits = DEFAULT_SLOTS,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        backlog: int = 64,
        is_operator: Callable[[Peer | None], bool] = local_operator,
        is_agency: Callable[[str], bool] | None = None,
        heavy_ops: frozenset[str] = frozenset(),
        nice_ops: frozenset[str] | None = None,
        heavy_per_agency: int = 2,
        heavy_wait_s: float = 30.0,
        refusal_burst: int = 20,
        refusal_rate: float = 2.0,
    ) -> None:
        self.socket_path = socket_path
        self.authenticate = authenticate
        self.handlers: Mapping[str, Handler] = dict(handlers)
        self.refusals = RefusalReporter(on_refusal, burst=refusal_burst, rate=refusal_rate, is_known=is_agency)
        self.max_request_bytes = max_request_bytes
        self.slots: Slots[Connection] = Slots(slots)
        self.timeouts = timeouts
        self.backlog = backlog
        self._is_operator = is_operator
        self.heavy_ops = heavy_ops
        # Heavy operations that start at nice +10; the rest (searches, mostly a few milliseconds)
        # lower their own thread's priority once they run long (see connection.lower_thread_priority).
        self.nice_ops = heavy_ops if nice_ops is None else nice_ops
        self.heavy = HeavyGate(heavy_per_agency, heavy_wait_s)
        self.stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._clients: dict[Connection, threading.Thread] = {}
        self._inode: tuple[int, int] | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self._clients)

    def start(self) -> None:
        """Bind the socket (removing a stale one; refusing if a daemon answers) and start accepting."""
        if self._thread is not None:
            raise ControlError("control server already started")
        self._listener = bind_private(self.socket_path, backlog=self.backlog)
        self._listener.setblocking(False)
        self._wake = socket.socketpair()
        st = os.stat(self.socket_path)
        self._inode = (st.st_dev, st.st_ino)
        self._thread = threading.Thread(target=self._accept_loop, name="control-listener", daemon=True)
        self._thread.start()
        log.info("control_listening", path=str(self.socket_path), ops=sorted(self.handlers))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, end every connection (streams included), unlink the socket. Idempotent."""
        deadline = time.monotonic() + timeout
        self.stopping.set()
        if self._wake is not None:
            with contextlib.suppress(OSError):
                self._wake[1].send(b"x")
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._listener is not None:
            self._listener.close()
        self._unlink()
        with self._lock:
            clients = list(self._clients.items())
        for conn, _ in clients:
            conn.close(socket.SHUT_RD)  # idle readers wake now; streams say "stopping" at their next tick
        grace = time.monotonic() + (deadline - time.monotonic()) / 2
        for _, thread in clients:
            thread.join(max(0.0, grace - time.monotonic()))
        for conn, thread in clients:
            if thread.is_alive():
                conn.close()
                thread.join(max(0.0, deadline - time.monotonic()))
        if self._wake is not None:
            for end in self._wake:
                end.close()
        alive = [t.name for _, t in clients if t.is_alive()]
        if alive:
            log.warning("control_connections_still_running", threads=alive)
        log.info("control_stopped", path=str(self.socket_path))

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def claim(self, conn: Connection, agency_id: str) -> None:
        """Move an authenticated connection to its agency's slots (or the operator's); :class:`BusyError`."""
        kind = self.slots.claim(conn, agency_id, operator=self._operator(conn.peer))
        log.debug("control_client_authenticated", agency_id=agency_id, slot=kind, peer=conn.peer)

    def _operator(self, peer: Peer | None) -> bool:
        try:
            return bool(self._is_operator(peer))
        except Exception:
            log.exception("control_operator_check_failed", peer=peer)
            return False

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wake is not None
        while not self.stopping.is_set():
            readable, _, _ = select.select([self._listener, self._wake[0]], [], [], ACCEPT_POLL_S)
            if self._listener not in readable:
                continue
            for _ in range(ACCEPT_BATCH):  # drain the backlog quickly: waiting clients sit there
                try:
                    sock, _ = self._listener.accept()
                except BlockingIOError:
                    break
                except OSError as exc:
                    if not self.stopping.is_set():
                        log.error("control_accept_failed", error=str(exc))
                        self.stopping.wait(ACCEPT_POLL_S)
                    break
                sock.settimeout(None)
                try:
                    self._admit(sock)
                except Exception:  # one bad accept must not end the listener
                    log.exception("control_admit_failed")
                    sock.close()

    def _admit(self, sock: socket.socket) -> None:
        conn = Connection(self, sock, peer_credentials(sock))
        try:
            victim = self.slots.admit(conn, operator=self._operator(conn.peer), eviction_rank=Connection.eviction_rank)
        except BusyError as exc:
            log.warning("control_too_many_clients", reason=exc.message, peer=conn.peer)
            conn.evict(exc)
            sock.close()
            return
        if victim is not None:
            log.info("control_idle_connection_evicted", peer=victim.peer)
            victim.evict(BusyError("closed to make room: no request sent", hint="send a request after connecting"))
        thread = threading.Thread(target=self._run, args=(conn,), name="control-conn", daemon=True)
        with self._lock:
            self._clients[conn] = thread
        log.debug("control_client_connected", peer=conn.peer)
        thread.start()

    def _run(self, conn: Connection) -> None:
        try:
            conn.run()
        finally:
            self.slots.release(conn)
            conn.sock.close()
            with self._lock:
                self._clients.pop(conn, None)

    def _unlink(self) -> None:
        """Remove the socket file, but only if it is still ours (not a successor daemon's)."""
        try:
            st = os.stat(self.socket_path)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) == self._inode:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
