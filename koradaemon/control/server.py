"""The control server: a 0600 Unix socket, one listener thread and one thread per client.

Requests are authenticated with the agency's token before any handler runs. Malformed input,
failed authentication, unknown operations and forbidden requests get a JSON error and are
reported through ``on_refusal`` (wired to the audit log by the daemon), rate-limited.
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

from ..errors import ControlError
from .bind import bind_private
from .connection import Connection, Handler, peer_credentials
from .protocol import MAX_REQUEST_BYTES, error_line
from .refusals import RefusalFn, RefusalReporter

log = structlog.get_logger(__name__)

ACCEPT_POLL_S = 1.0


class ControlServer:
    def __init__(
        self,
        socket_path: Path,
        *,
        authenticate: Callable[[str, str], bool],
        handlers: Mapping[str, Handler],
        on_refusal: RefusalFn | None = None,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        max_clients: int = 32,
        refusal_burst: int = 20,
        refusal_rate: float = 2.0,
    ) -> None:
        self.socket_path = socket_path
        self.authenticate = authenticate
        self.handlers: Mapping[str, Handler] = dict(handlers)
        self.refusals = RefusalReporter(on_refusal, burst=refusal_burst, rate=refusal_rate)
        self.max_request_bytes = max_request_bytes
        self.max_clients = max_clients
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
        self._listener = bind_private(self.socket_path, backlog=max(16, self.max_clients))
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

    def _accept_loop(self) -> None:
        assert self._listener is not None and self._wake is not None
        while not self.stopping.is_set():
            readable, _, _ = select.select([self._listener, self._wake[0]], [], [], ACCEPT_POLL_S)
            if self._listener not in readable:
                continue
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                continue
            except OSError as exc:
                if not self.stopping.is_set():
                    log.error("control_accept_failed", error=str(exc))
                    self.stopping.wait(ACCEPT_POLL_S)
                continue
            sock.settimeout(None)
            self._admit(sock)

    def _admit(self, sock: socket.socket) -> None:
        peer = peer_credentials(sock)
        with self._lock:
            full = len(self._clients) >= self.max_clients
            if not full:
                conn = Connection(self, sock, peer)
                thread = threading.Thread(target=self._run, args=(conn,), name="control-conn", daemon=True)
                self._clients[conn] = thread
        if full:
            log.warning("control_too_many_clients", limit=self.max_clients, peer=peer)
            with contextlib.suppress(OSError):
                sock.sendall(error_line(None, ControlError("too many clients", hint="try again later")))
            sock.close()
            return
        log.debug("control_client_connected", peer=peer)
        thread.start()

    def _run(self, conn: Connection) -> None:
        try:
            conn.run()
        finally:
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
