"""One request, one reply over the control socket: the CLI's fast path.

The wire format is the control protocol's (one JSON object per line, see ``control/protocol.py``);
the long-lived and streaming client is :class:`koradaemon.control.client.ControlClient`. A connect
that finds the daemon's accept queue full is retried until ``timeout`` instead of failing at once.
Only C modules are loaded: ``_socket`` (the ``socket`` package builds enums of every constant, and
loads selectors) and ``_json`` through :mod:`.jsonlite` (``json`` loads ``re``).
"""

from __future__ import annotations

import _socket
import errno
import sys
import time

from .. import errors
from . import jsonlite

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_REPLY_BYTES = 64 << 20
BUSY_WAIT_S = 10.0  # how long a full accept queue or "busy" answers are waited out
_RETRY_FIRST_S, _RETRY_MAX_S = 0.005, 0.2
_NOT_RUNNING = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR, errno.ENOTSOCK)
_BUSY = (errno.EAGAIN, errno.EWOULDBLOCK)


class Wire:
    """A connection for a few sequential calls; ``with Wire(path) as w: w.call(...)``."""

    def __init__(self, socket_path: str, *, timeout: float = 120.0) -> None:
        self.path = socket_path
        self.timeout = timeout
        self._sock: _socket.socket | None = None
        self._buf = b""
        self._next_id = 1

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def call(self, op: str, agency_id: str, token: str, /, **args: Any) -> dict[str, Any]:
        """One request; a "busy" answer on a fresh connection (no free slot yet) is retried with backoff
        for up to BUSY_WAIT_S, as :class:`~koradaemon.control.client.ControlClient` does."""
        deadline = time.monotonic() + min(self.timeout, BUSY_WAIT_S)
        delay = _RETRY_FIRST_S
        while True:
            fresh = self._sock is None
            try:
                return self._call_once(op, agency_id, token, args)
            except errors.KoraError as exc:
                if exc.code != "busy" or not fresh or time.monotonic() >= deadline:
                    raise
            self.__exit__()
            time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 2, _RETRY_MAX_S)

    def _call_once(self, op: str, agency_id: str, token: str, args: dict[str, Any]) -> dict[str, Any]:
        sock = self._sock or self._connect()
        request_id, self._next_id = self._next_id, self._next_id + 1
        line = jsonlite.dumps({"id": request_id, "op": op, "agency_id": agency_id, "token": token, "args": args},
                              compact=True, allow_nan=False)
        try:
            sock.sendall(line.encode() + b"\n")
            reply = self._readline(sock)
        except TimeoutError:
            raise errors.ControlError("the daemon did not answer in time") from None
        except OSError as exc:
            raise errors.ControlError(f"lost the connection to the daemon: {exc.strerror or exc}") from None
        if reply.get("ok") is not True:
            raise error_from_body(reply.get("error"))
        if reply.get("id") != request_id or not isinstance(reply.get("result"), dict):
            raise errors.ControlError(f"the daemon's reply to {op!r} does not match the request")
        result: dict[str, Any] = reply["result"]
        return result

    def _connect(self) -> _socket.socket:
        deadline = time.monotonic() + min(self.timeout, BUSY_WAIT_S)
        delay = _RETRY_FIRST_S
        while True:
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
            # A blocking connect queues in the kernel while the accept queue is full, up to SO_SNDTIMEO
            # (Linux), first come first served: a crowd reconnecting at once cannot keep us out.
            _send_timeout(sock, max(0.001, deadline - time.monotonic()))
            try:
                sock.connect(self.path)
                _send_timeout(sock, 0)
                sock.settimeout(self.timeout)
            except OSError as exc:
                sock.close()
                if (exc.errno in _BUSY or isinstance(exc, TimeoutError)) and time.monotonic() < deadline:
                    time.sleep(delay)  # the accept queue is full: wait for a slot, within the timeout
                    delay = min(delay * 2, _RETRY_MAX_S)
                    continue
                if exc.errno in _BUSY or isinstance(exc, TimeoutError):
                    raise _coded("busy", 75, f"the daemon on {self.path} accepts no connection now",
                                 "it is overloaded: try again") from None
                if exc.errno in _NOT_RUNNING:
                    raise errors.NotRunningError(f"no daemon is listening on {self.path}",
                                                 hint="start it with 'koradaemon run'") from None
                raise errors.ControlError(f"cannot connect to {self.path}: {exc.strerror or exc}") from None
            self._sock = sock
            return sock

    def _readline(self, sock: _socket.socket) -> dict[str, Any]:
        while b"\n" not in self._buf:
            if len(self._buf) > MAX_REPLY_BYTES:
                raise errors.ControlError("the daemon's reply is too large")
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise errors.ControlError("the daemon closed the connection")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            reply = jsonlite.loads(line)
        except ValueError:
            raise errors.ControlError("the daemon sent a reply that is not JSON") from None
        if not isinstance(reply, dict):
            raise errors.ControlError("the daemon sent a reply that is not an object")
        return reply


def error_from_body(body: object) -> errors.KoraError:
    """The :class:`KoraError` subclass named by an error reply's ``code`` (ControlError when unknown)."""
    if not isinstance(body, dict):
        return errors.ControlError("malformed error reply from the daemon")
    code, message, hint = str(body.get("code", "")), str(body.get("message", "error")), body.get("hint")
    pending: list[type[errors.KoraError]] = [errors.KoraError]
    while pending:
        cls = pending.pop(0)
        if cls.code == code:
            try:
                return cls(message, hint=hint if isinstance(hint, str) else None)
            except TypeError:
                break
        pending.extend(cls.__subclasses__())
    fallback = {"internal": 70, "busy": 75}  # codes whose classes live outside errors.py (or not yet)
    if code in fallback:
        return _coded(code, fallback[code], message, hint if isinstance(hint, str) else None)
    return errors.ControlError(f"{code}: {message}" if code else message)


def _coded(code: str, exit_code: int, message: str, hint: str | None) -> errors.KoraError:
    err = errors.ControlError(message, hint=hint)
    err.code, err.exit_code = code, exit_code
    return err


def _send_timeout(sock: _socket.socket, seconds: float) -> None:
    """SO_SNDTIMEO, which also bounds a blocking connect to a full accept queue (0: none)."""
    whole = int(seconds)
    try:  # noqa: SIM105 - contextlib.suppress would load contextlib (and collections, functools) on every call
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, timeval(whole, int((seconds - whole) * 1e6)))
    except OSError:
        pass


def timeval(seconds: int, microseconds: int) -> bytes:
    """``struct timeval`` (two C longs: ``struct.pack("ll", ...)``) without loading ``_struct``; a long is
    pointer-sized on Linux and the BSDs (LP64 and ILP32)."""
    size = 8 if sys.maxsize > 1 << 32 else 4
    return seconds.to_bytes(size, sys.byteorder, signed=True) + microseconds.to_bytes(size, sys.byteorder, signed=True)
