"""Per-agency access tokens: one 0600 file ``<dir>/<agency_id>.token`` each, in a 0700 folder.

A client proves it may act for an agency by sending that agency's token with every control
request. Tokens are compared in constant time.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
import threading
from pathlib import Path

import structlog

from ..errors import AuthError, KoraError
from ..paths import check_agency_id

log = structlog.get_logger(__name__)


class TokenStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # check() keeps each token with the file's identity (inode, size, mtime, ctime): a request
        # then costs one stat, and a token replaced or rewritten on disk is read anew.
        self._known: dict[str, tuple[tuple[int, int, int, int, int], str]] = {}
        self._lock = threading.Lock()

    def path(self, agency_id: str) -> Path:
        """The token file of ``agency_id`` (:class:`PathError` for an invalid id)."""
        return self.directory / f"{check_agency_id(agency_id)}.token"

    def ensure(self, agency_id: str) -> str:
        """Return the agency's token, creating the token file (0600, atomic) if missing or empty."""
        path = self.path(agency_id)
        self._ensure_dir()
        existing = _read_file(path)
        if existing:
            return existing
        token = secrets.token_urlsafe(32)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, (token + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            if existing is None:
                os.link(tmp, path)  # never replaces a token another process wrote meanwhile
            else:
                os.replace(tmp, path)  # an empty file left by a crash
        except FileExistsError:
            return _read_file(path) or self.ensure(agency_id)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        _fsync_dir(self.directory)
        log.info("token_created", agency_id=agency_id)
        return token

    def read(self, agency_id: str) -> str:
        """The agency's token; :class:`AuthError` when there is none."""
        token = _read_file(self.path(agency_id))
        if not token:
            raise AuthError(f"no token for agency {agency_id!r}", hint="is the daemon configured for it?")
        return token

    def check(self, agency_id: str, token: str) -> bool:
        """Constant-time comparison; unknown agencies and invalid ids are simply False."""
        try:
            expected = self._current(agency_id)
        except (KoraError, OSError, UnicodeError):
            expected = ""
        ok = hmac.compare_digest(expected.encode(), token.encode("utf-8", "replace"))
        return ok and bool(expected)

    def _current(self, agency_id: str) -> str:
        """The token on disk now ('' for an empty file): read again only when the file's identity
        changed; :class:`FileNotFoundError` when there is none."""
        path = self.path(agency_id)
        st = os.stat(path)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        with self._lock:
            known = self._known.get(agency_id)
        if known is not None and known[0] == key:
            return known[1]
        token = _read_file(path) or ""  # the path is resolved once (read() would check the id again)
        with self._lock:
            self._known[agency_id] = (key, token)
        return token

    def _ensure_dir(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)


def _read_file(path: Path) -> str | None:
    """The stripped token text, '' for an empty file, None when there is no file."""
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
