"""One client connection of the control server: read request lines, answer each, stream if asked."""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import structlog

from ..errors import AuthError, ControlError, KoraError, ProtocolError
from .protocol import (
    BadRequest,
    InternalError,
    LineReader,
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

log = structlog.get_logger(__name__)

SEND_TIMEOUT_S = 10.0  # a client that stops reading cannot pin a connection thread for longer

HandlerResult = Mapping[str, Any] | Iterator[Mapping[str, Any] | None]
Handler = Callable[[Request], HandlerResult]


class ServerContext(Protocol):
    """What a connection needs from its server."""

    authenticate: Callable[[str, str], bool]
    handlers: Mapping[str, Handler]
    refusals: RefusalReporter
    max_request_bytes: int
    stopping: threading.Event


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
        self._reader = LineReader(sock, server.max_request_bytes)
        _set_send_timeout(sock, SEND_TIMEOUT_S)

    def run(self) -> None:
        """Serve requests until the client leaves, the server stops or a request is too large."""
        try:
            while not self.server.stopping.is_set():
                try:
                    line = self._reader.readline()
                except RequestTooLarge as exc:
                    self._send(error_line(None, exc))
                    self._refuse(None, "request too large", "")
                    return
                if line is None or not self._serve(line):
                    return
        except OSError as exc:
            log.debug("control_connection_error", error=str(exc))
        finally:
            self.close()

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
        try:
            for event in events:
                if self.server.stopping.is_set():
                    self._send(error_line(req.id, ControlError("the daemon is stopping")))
                    return False
                if event is None:  # idle tick: a send would not notice a client that hung up
                    if self._peer_closed():
                        return False
                elif not self._send(event_line(req.id, event)):
                    return False
            return self._send(end_line(req.id))
        finally:
            close = getattr(events, "close", None)
            if callable(close):
                close()

    def _peer_closed(self) -> bool:
        """True when the client hung up (read side at EOF); pipelined requests wait for the stream."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if not readable:
                return False
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True

    def _send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            log.debug("control_send_failed", error=str(exc))
            return False
        return True


def _set_send_timeout(sock: socket.socket, seconds: float) -> None:
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
