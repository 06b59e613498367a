"""Creating the control socket file safely: mode 0600 from the start, one live daemon per path."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import tempfile
from pathlib import Path

import structlog

from ..errors import ControlError

log = structlog.get_logger(__name__)

# sun_path is 108 bytes on Linux and 104 on the BSDs/macOS, terminating NUL included.
MAX_SOCKET_PATH = 103


def is_live(path: Path, timeout: float = 1.0) -> bool:
    """True when something listens on the Unix socket at ``path``.

    Only "connection refused" (or no file) counts as dead: a busy daemon whose backlog is full
    answers EAGAIN or times out, and must not lose its socket to a second instance.
    """
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    probe.settimeout(timeout)
    try:
        probe.connect(os.fspath(path))
    except OSError as exc:
        return exc.errno not in (errno.ECONNREFUSED, errno.ENOENT)
    finally:
        probe.close()
    return True


def remove_stale(path: Path) -> None:
    """Remove a socket file nobody listens on; refuse a live one or a non-socket file."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ControlError(f"control socket path {path} exists and is not a socket", hint="move it away")
    if is_live(path):
        raise ControlError(f"another daemon is already listening on {path}", hint="stop it first")
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    log.info("control_stale_socket_removed", path=str(path))


def bind_private(path: Path, backlog: int) -> socket.socket:
    """Bind and listen on ``path`` with mode 0600, without touching the process umask.

    The socket is bound inside a fresh 0700 folder next to ``path`` (so it is never reachable
    with looser permissions), set to 0600, then hard-linked into place, which fails rather than
    replacing a socket another daemon put there meanwhile.
    """
    if len(os.fsencode(path)) + 16 > MAX_SOCKET_PATH:
        raise ControlError(f"control socket path too long for AF_UNIX: {path}", hint="use a shorter runtime dir")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    remove_stale(path)
    private = Path(tempfile.mkdtemp(prefix=".ctl", dir=path.parent))
    tmp = private / "s"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(os.fspath(tmp))
        os.chmod(tmp, 0o600)
        _publish(tmp, path)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        private.rmdir()
    return sock


def _publish(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise ControlError(f"another daemon created {path} while we were starting", hint="stop it first") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        os.replace(tmp, path)  # file systems without hard links: a rename is still atomic
