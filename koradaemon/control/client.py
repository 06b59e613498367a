"""Client side of the control socket, used by the CLI and by tests."""

from __future__ import annotations

import errno
import itertools
import json
import os
import socket
from collections.abc import Generator
from pathlib import Path
from typing import Any

from ..errors import ControlError, NotRunningError, ProtocolError
from .protocol import LineReader, encode_request, error_from_body

MAX_RESPONSE_BYTES = 64 << 20
_NOT_RUNNING = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR, errno.ENOTSOCK)


class ControlClient:
    """``call()`` reuses one connection; each ``stream()`` opens its own."""

    def __init__(self, socket_path: Path, *, timeout: float | None = 10.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._sock: socket.socket | None = None
        self._reader: LineReader | None = None

    def is_running(self) -> bool:
        """True when a daemon accepts connections on the socket."""
        try:
            self._connect(self.timeout).close()
        except ControlError:
            return False
        return True

    def call(self, op: str, agency_id: str, token: str, /, **args: Any) -> dict[str, Any]:
        """Send one request and return its ``result``; raises the :class:`KoraError` the daemon named."""
        if self._sock is None:
            self._sock = self._connect(self.timeout)
            self._reader = LineReader(self._sock, MAX_RESPONSE_BYTES)
        assert self._reader is not None
        request_id = next(self._ids)
        try:
            self._sock.sendall(encode_request(request_id, op, agency_id, token, args))
            reply = _read(self._reader)
        except BaseException:
            self.close()  # transport trouble: the next call reconnects
            raise
        try:
            _check(reply, request_id)
        except ProtocolError:
            self.close()  # the daemon may have hung up after a protocol error (e.g. request too large)
            raise
        if "result" not in reply or not isinstance(reply["result"], dict):
            raise ControlError(f"reply to {op!r} has no result object")
        return reply["result"]

    def stream(
        self, op: str, agency_id: str, token: str, /, *, idle_timeout: float | None = None, **args: Any
    ) -> Generator[dict[str, Any], None, None]:
        """Yield the events of a streaming operation until its end line; closing the iterator hangs up.

        ``idle_timeout`` bounds the wait for each event (None: wait as long as the daemon runs).
        """
        sock = self._connect(self.timeout)
        try:
            sock.sendall(encode_request(0, op, agency_id, token, args))
            sock.settimeout(idle_timeout)
            reader = LineReader(sock, MAX_RESPONSE_BYTES)
            while True:
                reply = _check(_read(reader), 0)
                if reply.get("end") is True:
                    return
                event = reply.get("event")
                if not isinstance(event, dict):
                    raise ControlError(f"stream of {op!r} sent a line without an event")
                yield event
        finally:
            sock.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._reader = None

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self, timeout: float | None) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            sock.connect(os.fspath(self.socket_path))
        except OSError as exc:
            sock.close()
            if exc.errno in _NOT_RUNNING or isinstance(exc, FileNotFoundError | ConnectionRefusedError):
                raise NotRunningError(
                    f"no daemon is listening on {self.socket_path}", hint="start it with 'koradaemon run'"
                ) from None
            raise ControlError(f"cannot connect to {self.socket_path}: {exc.strerror or exc}") from exc
        return sock


def _read(reader: LineReader) -> dict[str, Any]:
    """Read the next reply line as an object."""
    try:
        line = reader.readline()
    except TimeoutError:
        raise ControlError("the daemon did not answer in time") from None
    if line is None:
        raise ControlError("the daemon closed the connection")
    try:
        reply = json.loads(line)
    except ValueError:
        raise ControlError("the daemon sent a reply that is not JSON") from None
    if not isinstance(reply, dict):
        raise ControlError("the daemon sent a reply that is not an object")
    return reply


def _check(reply: dict[str, Any], request_id: Any) -> dict[str, Any]:
    """Raise the error a reply carries, if any."""
    if reply.get("ok") is not True:
        raise error_from_body(reply.get("error"))
    if reply.get("id") != request_id:
        raise ControlError(f"reply id {reply.get('id')!r} does not match request id {request_id!r}")
    return reply
