"""The vault key: passphrase file, PBKDF2 derivation, a zeroable in-memory key, idle auto-lock."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from ..errors import VaultError
from ..paths import check_relative
from .kv1 import MIN_ITERATIONS, check_iterations, file_key_from_master

log = structlog.get_logger(__name__)

CREDENTIAL_PREFIX = "credential:"
SALT_LEN = 16
MAX_CACHED_KEYS = 16
MAX_PASSPHRASE_BYTES = 64 * 1024


def resolve_passphrase_path(spec: str, data_root: Path) -> Path:
    """``credential:NAME`` → ``$CREDENTIALS_DIRECTORY/NAME`` (systemd ``LoadCredential=``);
    anything else is a path relative to the data root (absolute paths and ``..`` are refused)."""
    if spec.startswith(CREDENTIAL_PREFIX):
        name = spec[len(CREDENTIAL_PREFIX):]
        if not name or "/" in name or name in (".", "..") or "\x00" in name:
            raise VaultError(f"vault passphrase: bad credential name {name!r}")
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if not creds:
            raise VaultError("vault passphrase: $CREDENTIALS_DIRECTORY is not set",
                             hint="use LoadCredential= in the service unit, or a file under the data root")
        return Path(creds) / name
    return data_root / check_relative(spec, what="vault passphrase file")


def load_passphrase(path: Path) -> bytearray:
    """Read the passphrase file into a zeroable buffer (one trailing newline stripped)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)  # a FIFO never blocks
    except OSError as exc:
        raise VaultError(f"vault passphrase file {path.name!r} cannot be read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise VaultError(f"vault passphrase file {path.name!r} is not a regular file")
        if st.st_mode & 0o077:
            raise VaultError(f"vault passphrase file {path.name!r} is readable by group or others",
                             hint="chmod 600 it")
        buf = bytearray(MAX_PASSPHRASE_BYTES + 1)
        n = os.readv(fd, [buf])
    finally:
        os.close(fd)
    if n > MAX_PASSPHRASE_BYTES:
        _zero(buf)
        raise VaultError(f"vault passphrase file {path.name!r} is larger than 64 KiB")
    del buf[n:]
    for ending in (b"\r\n", b"\n"):
        if buf.endswith(ending):
            buf[-len(ending):] = b"\x00" * len(ending)
            del buf[-len(ending):]
            break
    if not buf:
        raise VaultError(f"vault passphrase file {path.name!r} is empty")
    return buf


def _zero(buf: bytearray) -> None:
    buf[:] = bytes(len(buf))


class KeyHolder:
    """Holds derived vault keys while unlocked; zeroes them on ``lock()`` or after ``idle_lock_s``.

    New files use one random salt per holder, so one unlock costs one PBKDF2 run; keys for other
    salts (older snapshots) are derived on demand and cached until the next lock.
    """

    def __init__(self, passphrase_path: Path, *, idle_lock_s: float, iterations: int = MIN_ITERATIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        check_iterations(iterations)
        self.passphrase_path = passphrase_path
        self.idle_lock_s = idle_lock_s
        self.iterations = iterations
        self.salt = os.urandom(SALT_LEN)
        self._clock = clock
        self._keys: dict[tuple[bytes, int], bytearray] = {}
        self._last_use = 0.0
        self._mutex = threading.Lock()

    @property
    def is_locked(self) -> bool:
        with self._mutex:
            self._expire()
            return not self._keys

    def unlock(self) -> None:
        """Derive the key for new files now (fails early on a bad passphrase file)."""
        with self._mutex:
            self._expire()
            self._master(self.salt, self.iterations)

    def lock(self) -> None:
        with self._mutex:
            self._lock_now("explicit")

    def maybe_lock(self) -> bool:
        """Lock if idle for ``idle_lock_s``; return True if locked now. Called periodically."""
        with self._mutex:
            return self._expire()

    def file_key(self, salt: bytes, iterations: int, file_id: bytes) -> bytearray:
        """The per-file AES key (see KV-1), deriving the master key for ``salt`` if needed."""
        check_iterations(iterations)
        with self._mutex:
            self._expire()
            return file_key_from_master(self._master(salt, iterations), file_id)

    def _master(self, salt: bytes, iterations: int) -> bytearray:
        key = self._keys.get((salt, iterations))
        if key is None:
            key = self._derive(salt, iterations)
            if len(self._keys) >= MAX_CACHED_KEYS:
                _zero(self._keys.pop(next(iter(self._keys))))
            self._keys[(salt, iterations)] = key
        self._last_use = self._clock()
        return key

    def _derive(self, salt: bytes, iterations: int) -> bytearray:
        passphrase = load_passphrase(self.passphrase_path)
        key = bytearray(32)
        started = time.monotonic()
        try:
            PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations).derive_into(
                passphrase, key)
        finally:
            _zero(passphrase)
        log.info("vault_unlocked", iterations=iterations, seconds=round(time.monotonic() - started, 3))
        return key

    def _expire(self) -> bool:
        if self._keys and self._clock() - self._last_use >= self.idle_lock_s:
            self._lock_now("idle")
            return True
        return False

    def _lock_now(self, reason: str) -> None:
        if self._keys:
            for key in self._keys.values():
                _zero(key)
            self._keys.clear()
            log.info("vault_locked", reason=reason)
