"""One client connection of the control server: read request lines, answer each, stream if asked."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from ..errors import AuthError, BusyError, ControlError, KoraError, ProtocolError
from .framing import FrameTimeout, IdleTimeout, LineReader, ready_now
from .protocol import (
    BadRequest,
    InternalError,
    Peer,
    Request,
    RequestTooLarge,
    end_line,
    error_line,
    event_line,
    ok_line,
    parse_request,
)
from .refusals import RefusalReporter
from .slots import HeavyGate

log = structlog.get_logger(__name__)

HEAVY_NICE = 10
SEND_TIMEOUT_S = 10.0  # a client that stops reading cannot pin a connection thread for longer
LINGER_S = 0.25  # after the last reply: how long bytes the client still sends are read and dropped

_AUTH_TIMEOUT = AuthError("no authenticated request in time", hint="send a request with a valid token")

HandlerResult = Mapping[str, Any] | Iterator[Mapping[str, Any] | None]
Handler = Callable[[Request], HandlerResult]


@dataclass(frozen=True)
class Timeouts:
    """Per-connection time limits, in seconds.

    ``auth``: from connect to the first request with a valid token. ``idle``: between requests of
    an authenticated connection. ``read``: from a request's first byte to its newline.
    """

    auth: float = 10.0
    idle: float = 300.0
    read: float = 10.0


class ServerContext(Protocol):
    """What a connection needs from its server."""

    authenticate: Callable[[str, str], bool]
    handlers: Mapping[str, Handler]
    refusals: RefusalReporter
    max_request_bytes: int
    stopping: threading.Event
    timeouts: Timeouts
    heavy_ops: frozenset[str]
    nice_ops: frozenset[str]  # heavy operations run at nice +10 from their start (others lower it themselves)
    heavy: HeavyGate

    def claim(self, conn: Connection, agency_id: str) -> None:
        """Give an authenticated connection its agency's slot (or the operator's); :class:`BusyError`."""


def peer_credentials(sock: socket.socket) -> Peer | None:
    """The connecting process's pid/uid/gid where the OS tells (Linux ``SO_PEERCRED``)."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i"))
    except OSError:
        return None
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid=pid, uid=uid, gid=gid)


class Connection:
    def __init__(self, server: ServerContext, sock: socket.socket, peer: Peer | None) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self.authenticated = False
        self._niced = False
        self._reader = LineReader(sock, server.max_request_bytes)
        _set_send_timeout(sock, SEND_TIMEOUT_S)

    def eviction_rank(self) -> int | None:
        """For the pre-auth pool: 0 when the client has sent nothing at all, 1 when it has but
        nothing of it waits to be read (half a line, refused requests), None when bytes wait."""
        try:  # poll first: a socket with a timeout would wait in recv despite MSG_DONTWAIT
            waiting = ready_now(self.sock) and bool(self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except (OSError, ValueError):
            waiting = False  # broken or at its end: nothing to lose
        if waiting:
            return None
        return 1 if self._reader.received else 0

    def evict(self, exc: KoraError) -> None:
        """Say why (without blocking) and hang up; the connection's thread then ends. Any thread."""
        with contextlib.suppress(OSError, ValueError):
            if ready_now(self.sock, write=True):
                self.sock.send(error_line(None, exc), socket.MSG_DONTWAIT)
        self.close()

    def run(self) -> None:
        """Serve requests until the client leaves, the server stops or a timeout expires."""
        auth_deadline = time.monotonic() + self.server.timeouts.auth
        try:
            while not self.server.stopping.is_set():
                if not self._set_timeouts(auth_deadline):
                    self._send(error_line(None, _AUTH_TIMEOUT))
                    return
                try:
                    line = self._reader.readline()
                except RequestTooLarge as exc:
                    self._refuse(None, "request too large", "")
                    if not self._send(error_line(None, exc)):
                        return
                    continue
                except (IdleTimeout, FrameTimeout) as exc:
                    log.debug("control_connection_timeout", error=exc.message, peer=self.peer)
                    late = not self.authenticated and time.monotonic() >= auth_deadline - 0.01
                    self._send(error_line(None, _AUTH_TIMEOUT if late else exc))
                    return
                if line is None or not self._serve(line):
                    return
        except OSError as exc:
            log.debug("control_connection_error", error=str(exc))
        finally:
            self._linger_close()

    def _linger_close(self) -> None:
        """End the connection so that its last line arrives: say end-of-stream first, then read
        (and drop) what the client still sends until it hangs up too or :data:`LINGER_S` passes.

        Closing a socket with unread bytes in it resets the connection, and a reset can take
        the reply already sent with it (a client still typing when its timeout error went out).
        """
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_S
        with contextlib.suppress(OSError, ValueError):
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                if not self.sock.recv(65536):
                    break
        self.close()

    def _set_timeouts(self, auth_deadline: float) -> bool:
        """Apply the limits for the next read; False when the pre-auth time is up."""
        limits = self.server.timeouts
        if self.authenticated:
            self._reader.idle_timeout, self._reader.frame_timeout = limits.idle, limits.read
            return True
        remaining = auth_deadline - time.monotonic()
        if remaining <= 0:
            return False
        self._reader.idle_timeout = min(limits.idle, remaining)
        self._reader.frame_timeout = min(limits.read, remaining)
        return True

    def close(self, how: int = socket.SHUT_RDWR) -> None:
        """Wake a blocked read (``SHUT_RD`` still lets a last error line out); any thread, idempotent."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(how)

    def _serve(self, line: bytes) -> bool:
        """Answer one line; False when the connection should end."""
        if not line.strip():
            return True
        try:
            envelope = parse_request(line)
        except BadRequest as exc:
            self._refuse(exc.agency_id, f"malformed request: {exc.message}", exc.op)
            return self._send(error_line(exc.request_id, exc))
        req = Request(envelope.request.id, envelope.request.op, envelope.request.agency_id,
                      envelope.request.args, self.peer)
        if not self._authenticate(req.agency_id, envelope.token):
            self._refuse(req.agency_id, "authentication failed", req.op)
            return self._send(error_line(req.id, AuthError("authentication failed", hint="check agency_id and token")))
        if not self.authenticated:
            try:
                self.server.claim(self, req.agency_id)
            except BusyError as exc:
                self._send(error_line(req.id, exc))
                return False
            self.authenticated = True
        handler = self.server.handlers.get(req.op)
        if handler is None:
            self._refuse(req.agency_id, "unknown operation", req.op)
            return self._send(error_line(req.id, ProtocolError(f"unknown operation {req.op!r}")))
        return self._call(handler, req)

    def _refuse(self, agency_id: str | None, reason: str, op: str) -> None:
        self.server.refusals.report(agency_id, reason, op, peer=self.peer)

    def _authenticate(self, agency_id: str, token: str) -> bool:
        try:
            return bool(self.server.authenticate(agency_id, token))
        except Exception:
            log.exception("control_authenticate_raised", agency_id=agency_id)
            return False

    def _call(self, handler: Handler, req: Request) -> bool:
        heavy = req.op in self.server.heavy_ops
        if heavy:
            try:
                self.server.heavy.enter(req.agency_id, cancelled=self._peer_closed)
            except BusyError as exc:
                return self._send(error_line(req.id, exc))
            if not self._niced and req.op in self.server.nice_ops:
                self._niced = lower_thread_priority()
        try:
            return self._run_handler(handler, req)
        finally:
            if heavy:
                self.server.heavy.leave(req.agency_id)

    def _run_handler(self, handler: Handler, req: Request) -> bool:
        try:
            result = handler(req)
            if isinstance(result, Mapping):
                return self._send(ok_line(req.id, result))
            if isinstance(result, Iterator):
                return self._stream(req, result)
            raise TypeError(f"handler for {req.op!r} returned {type(result).__name__}")
        except KoraError as exc:
            return self._send_error(req, exc)
        except Exception:
            log.exception("control_handler_failed", op=req.op, agency_id=req.agency_id)
            return self._send(error_line(req.id, InternalError(f"operation {req.op!r} failed", hint="see the log")))

    def _send_error(self, req: Request, exc: KoraError) -> bool:
        if isinstance(exc, AuthError):
            self._refuse(req.agency_id, f"forbidden: {exc.message}", req.op)
        return self._send(error_line(req.id, exc))

    def _stream(self, req: Request, events: Iterator[Mapping[str, Any] | None]) -> bool:
        ended = "end"
        try:
            for event in events:
                if self.server.stopping.is_set():
                    ended = "stopping"
                    self._send(error_line(req.id, ControlError("the daemon is stopping")))
                    return False
                if event is None:  # idle tick: a send would not notice a client that hung up
                    if self._peer_closed():
                        ended = "hang-up"
                        return False
                elif not self._send(event_line(req.id, event)):
                    ended = "hang-up"
                    return False
            return self._send(end_line(req.id))
        finally:
            log.debug("control_stream_ended", op=req.op, agency_id=req.agency_id, reason=ended)
            close = getattr(events, "close", None)
            if callable(close):
                close()

    def _peer_closed(self) -> bool:
        """True when the client hung up (read side at EOF); pipelined requests wait for the stream."""
        try:
            if not ready_now(self.sock):
                return False
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True

    def _send(self, data: bytes) -> bool:
        try:
            self.sock.settimeout(SEND_TIMEOUT_S)  # the reader's last timeout may have been short
            self.sock.sendall(data)
        except OSError as exc:
            log.debug("control_send_failed", error=str(exc))
            return False
        return True


def lower_thread_priority() -> bool:
    """Give the calling thread nice +10 (Linux: each thread has its own nice value).

    A connection that ran a heavy operation keeps it for the rest of its life, so light requests
    of everyone else (and other processes, the CLI included) get the CPU first. Lowering a
    priority needs no privilege; it is never raised back, and the thread ends with its connection.
    """
    if not sys.platform.startswith("linux"):
        return True  # elsewhere PRIO_PROCESS would name a process, not this thread
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), HEAVY_NICE))
    except OSError as exc:
        log.debug("control_nice_failed", error=str(exc))
    return True


def _set_send_timeout(sock: socket.socket, seconds: float) -> None:
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
