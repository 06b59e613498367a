"""Client side of the control socket, used by the CLI and by tests."""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import socket
import struct
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from ..errors import BusyError, ControlError, NotRunningError
from .framing import LineReader, ready_now
from .protocol import encode_request, error_from_body

MAX_RESPONSE_BYTES = 64 << 20
_NOT_RUNNING = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR, errno.ENOTSOCK)
DEFAULT_BUSY_WAIT_S = 10.0  # how long to wait on a full backlog or busy slots when no timeout is set
_RETRY_FIRST_S, _RETRY_MAX_S = 0.005, 0.2


class ControlClient:
    """``call()`` reuses one connection; each ``stream()`` opens its own.

    A daemon under load may keep a new connection waiting: a full accept backlog (EAGAIN) or a
    "busy" answer (no free slot) is retried with backoff until ``timeout`` runs out, then raised
    as :class:`BusyError`. A kept connection the daemon has since closed (idle timeout) is
    replaced before the next request, never reused.
    """

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
        except BusyError:
            return True  # it is there, only overloaded
        except ControlError:
            return False
        return True

    def call(self, op: str, agency_id: str, token: str, /, **args: Any) -> dict[str, Any]:
        """Send one request and return its ``result``; raises the :class:`KoraError` the daemon named."""
        deadline = time.monotonic() + (self.timeout if self.timeout is not None else DEFAULT_BUSY_WAIT_S)
        delay = _RETRY_FIRST_S
        while True:
            fresh = self._sock is None or self._stale()
            try:
                return self._call_once(op, agency_id, token, args)
            except BusyError:
                # "busy" comes before the request runs: on a fresh connection retrying is safe
                remaining = deadline - time.monotonic()
                if not fresh or remaining <= 0:
                    raise
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, _RETRY_MAX_S)

    def _call_once(self, op: str, agency_id: str, token: str, args: dict[str, Any]) -> dict[str, Any]:
        if self._sock is None or self._stale():
            self.close()
            self._sock = self._connect(self.timeout)
            self._reader = LineReader(self._sock, MAX_RESPONSE_BYTES)
        assert self._reader is not None
        request_id = next(self._ids)
        try:
            try:
                self._sock.sendall(encode_request(request_id, op, agency_id, token, args))
            except OSError:
                _raise_parting_error(self._reader)  # e.g. "busy", sent just before the daemon hung up
                raise
            reply = _read(self._reader)
        except BaseException:
            self.close()  # transport trouble: the next call reconnects
            raise
        try:
            _check(reply, request_id)
        except ControlError:
            self.close()  # the daemon may have hung up after this error (busy, timeout)
            raise
        if "result" not in reply or not isinstance(reply["result"], dict):
            raise ControlError(f"reply to {op!r} has no result object")
        return reply["result"]

    def _stale(self) -> bool:
        """True when the kept connection has something unasked-for to read: EOF or a parting error."""
        if self._sock is None:
            return True
        try:
            return ready_now(self._sock)
        except (OSError, ValueError):
            return True

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
        """Connect, waiting (with backoff, up to ``timeout``) while the daemon's backlog is full."""
        deadline = time.monotonic() + (timeout if timeout is not None else DEFAULT_BUSY_WAIT_S)
        delay = _RETRY_FIRST_S
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            # A blocking connect queues in the kernel while the backlog is full, for up to
            # SO_SNDTIMEO (Linux); where that does not apply, EAGAIN is retried below.
            _set_send_timeout(sock, max(0.001, deadline - time.monotonic()))
            try:
                sock.connect(os.fspath(self.socket_path))
                _set_send_timeout(sock, 0)  # 0: none; sends follow ``timeout`` from here on
                sock.settimeout(timeout)
                return sock
            except OSError as exc:
                sock.close()
                if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK) and not isinstance(exc, TimeoutError):
                    raise self._connect_error(exc) from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BusyError(
                    f"the daemon on {self.socket_path} did not accept the connection in time",
                    hint="it is overloaded; try again",
                )
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, _RETRY_MAX_S)

    def _connect_error(self, exc: OSError) -> ControlError:
        if exc.errno in _NOT_RUNNING or isinstance(exc, FileNotFoundError | ConnectionRefusedError):
            return NotRunningError(
                f"no daemon is listening on {self.socket_path}", hint="start it with 'koradaemon run'"
            )
        return ControlError(f"cannot connect to {self.socket_path}: {exc.strerror or exc}")


def _set_send_timeout(sock: socket.socket, seconds: float) -> None:
    whole = int(seconds)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", whole, int((seconds - whole) * 1e6)))


def _raise_parting_error(reader: LineReader) -> None:
    """After a failed send: raise the error line the daemon left before hanging up, if there is one."""
    try:
        reader.sock.settimeout(0.5)
        reply = _read(reader)
    except (OSError, ControlError):
        return
    if reply.get("ok") is not True:
        raise error_from_body(reply.get("error"))


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
