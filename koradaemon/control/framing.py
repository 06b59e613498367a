"""Framing of the control protocol: reading ``\\n``-terminated lines from a stream socket with
a size limit, an idle timeout and a per-frame read timeout; resynchronising after an over-long line."""

from __future__ import annotations

import select
import socket
import time

from ..errors import ControlError, ProtocolError
from .protocol import RequestTooLarge


class FrameTimeout(ProtocolError):
    """A request line was begun but not finished within the read timeout (the connection ends)."""

    code = "timeout"


class IdleTimeout(ControlError):
    """No request arrived within the idle timeout (the connection ends)."""

    code = "idle_timeout"


class LineReader:
    """Reads ``\\n``-terminated lines from a stream socket, refusing lines over ``max_bytes``.

    With ``idle_timeout`` the wait for the first byte of a line is bounded, with ``frame_timeout``
    the time from a line's first byte to its newline (a client sending one byte a second cannot
    hold a connection). Without them the socket's own timeout applies.
    """

    def __init__(
        self,
        sock: socket.socket,
        max_bytes: int,
        *,
        idle_timeout: float | None = None,
        frame_timeout: float | None = None,
        initial: bytes = b"",
    ) -> None:
        self.sock = sock
        self.max_bytes = max_bytes
        self.idle_timeout = idle_timeout
        self.frame_timeout = frame_timeout
        self.received = len(initial)
        self._buf = bytearray(initial)
        self._skipping = False  # after a too-large line: discard up to the next newline
        self._frame_started: float | None = time.monotonic() if initial else None

    @property
    def pending(self) -> bytes:
        """Bytes read but not yet returned as a line."""
        return bytes(self._buf)

    def readline(self) -> bytes | None:
        """The next line without its ``\\n``; None at end of stream (a trailing partial line is dropped).

        Raises :class:`RequestTooLarge` when no newline comes within the limit; the next call
        first skips the rest of that line, so the stream resynchronises at its newline.
        Raises :class:`IdleTimeout` / :class:`FrameTimeout` when a timeout expires.
        """
        while True:
            nl = self._buf.find(b"\n")
            if self._skipping:
                if nl < 0:
                    self._buf.clear()
                else:
                    del self._buf[: nl + 1]
                    self._skipping = False
                    self._frame_started = time.monotonic() if self._buf else None
                    continue
            elif nl >= 0:
                if nl > self.max_bytes:
                    return self._too_large(nl)
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                self._frame_started = time.monotonic() if self._buf else None
                return line
            elif len(self._buf) > self.max_bytes:
                return self._too_large(None)
            chunk = self._recv()
            if not chunk:
                return None
            if self._frame_started is None:
                self._frame_started = time.monotonic()
            self.received += len(chunk)
            self._buf += chunk

    def _too_large(self, nl: int | None) -> bytes:
        if nl is None:
            self._buf.clear()
            self._skipping = True
        else:
            del self._buf[: nl + 1]
            self._frame_started = time.monotonic() if self._buf else None
        raise RequestTooLarge(f"request too large (limit {self.max_bytes} bytes)")

    def _recv(self) -> bytes:
        in_frame = self._frame_started is not None
        limit = self.frame_timeout if in_frame else self.idle_timeout
        if limit is None:
            return self.sock.recv(65536)
        started = self._frame_started if in_frame else time.monotonic()
        assert started is not None
        remaining = started + limit - time.monotonic() if in_frame else limit
        if remaining <= 0:
            raise self._timeout(in_frame)
        self.sock.settimeout(remaining)
        try:
            return self.sock.recv(65536)
        except TimeoutError:
            raise self._timeout(in_frame) from None

    def _timeout(self, in_frame: bool) -> ControlError:
        if in_frame:
            return FrameTimeout(f"request not completed within {self.frame_timeout or 0:.3g}s")
        return IdleTimeout(f"no request within {self.idle_timeout or 0:.3g}s", hint="reconnect")


def ready_now(sock: socket.socket, *, write: bool = False) -> bool:
    """Whether ``sock`` is readable (or writable) right now, without waiting.

    ``poll`` rather than ``select``: a busy daemon's descriptors may lie above ``FD_SETSIZE``.
    A closed or hung-up socket counts as ready (a read then sees the end).
    """
    poller = select.poll()
    poller.register(sock, select.POLLOUT if write else select.POLLIN)
    return bool(poller.poll(0))
