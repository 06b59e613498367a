"""The secrets vault: one KV-1 file per secret, ``secrets-vault/<agency>/<name>.kv1``.

A secret's value is encrypted with the vault key (the same passphrase file, PBKDF2 and idle
auto-lock as the snapshots, :class:`~koradaemon.vault.keys.KeyHolder`). The KV-1 header's
context binds the agency and ``secret:<name>``, so a file copied to another agency or renamed
fails to decrypt. Values live in memory as ``bytearray`` and never touch the disk in clear.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Mapping
from pathlib import Path

from ..errors import UsageError, VaultError
from ..fsutil import atomic_file, fsync_dir
from .keys import KeyHolder
from .kv1 import DecryptReader, encrypt_stream

SECRETS_DIR = "secrets-vault"
SUFFIX = ".kv1"
MAX_SECRET_BYTES = 64 * 1024
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.endswith(".tmp"):
        raise UsageError(f"bad secret name {name!r}", hint="1-64 of A-Z a-z 0-9 . _ -, not starting with . or -")
    return name


def parse_secret_env(entries: tuple[str, ...]) -> dict[str, str]:
    """``agent.secret_env`` entries ``ENV_NAME=secret-name`` → {ENV_NAME: secret-name}."""
    out: dict[str, str] = {}
    for entry in entries:
        env, sep, name = entry.partition("=")
        if not sep or not _ENV.fullmatch(env):
            raise UsageError(f"agent.secret_env entry {entry!r} must be ENV_NAME=secret-name")
        out[env] = check_name(name)
    return out


class SecretStore:
    def __init__(self, root: Path, keys: KeyHolder) -> None:
        self.root = root
        self.keys = keys

    def _dir(self, agency_id: str) -> Path:
        if not agency_id or not _NAME.fullmatch(agency_id):
            raise UsageError(f"bad agency id {agency_id!r}")
        return self.root / agency_id

    def _path(self, agency_id: str, name: str) -> Path:
        return self._dir(agency_id) / (check_name(name) + SUFFIX)

    def set(self, agency_id: str, name: str, value: bytes | bytearray) -> int:
        """Encrypt ``value`` into the secret's file (atomically); return its length."""
        if len(value) > MAX_SECRET_BYTES:
            raise UsageError(f"secret {name!r} is larger than {MAX_SECRET_BYTES // 1024} KiB")
        if not value:
            raise UsageError(f"secret {name!r} is empty")
        path = self._path(agency_id, name)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with atomic_file(path) as out:
            encrypt_stream(io.BytesIO(bytes(value)), out, self.keys.file_key, salt=self.keys.salt,
                           iterations=self.keys.iterations, agency_id=agency_id, name=f"secret:{name}")
        return len(value)

    def get(self, agency_id: str, name: str) -> bytearray:
        """The secret's value; :class:`VaultError` on a wrong passphrase or a tampered/moved file."""
        path = self._path(agency_id, name)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise UsageError(f"no secret {name!r} for agency {agency_id!r}",
                             hint=f"'koradaemon secret list --agency {agency_id}'") from None
        out = bytearray()
        try:
            with fh:
                reader = DecryptReader(fh, self.keys.file_key, agency_id=agency_id, name=f"secret:{name}")
                while block := reader.read(MAX_SECRET_BYTES):
                    out += block
                    if len(out) > MAX_SECRET_BYTES:
                        raise VaultError(f"secret {name!r} is larger than {MAX_SECRET_BYTES // 1024} KiB")
        except VaultError:
            out[:] = bytes(len(out))  # never leave a partial plaintext behind
            raise VaultError(f"cannot decrypt secret {name!r} of agency {agency_id!r}: wrong passphrase, or the "
                             "file was tampered with, truncated or moved from another agency or name") from None
        except BaseException:
            out[:] = bytes(len(out))
            raise
        return out

    def list(self, agency_id: str) -> list[str]:
        folder = self._dir(agency_id)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        return sorted(n[: -len(SUFFIX)] for n in names
                      if n.endswith(SUFFIX) and not n.startswith(".") and _NAME.fullmatch(n[: -len(SUFFIX)]))

    def remove(self, agency_id: str, name: str) -> None:
        path = self._path(agency_id, name)
        try:
            path.unlink()
        except FileNotFoundError:
            raise UsageError(f"no secret {name!r} for agency {agency_id!r}") from None
        with contextlib.suppress(OSError):
            fsync_dir(path.parent)

    def environment(self, agency_id: str, wanted: Mapping[str, str]) -> dict[str, str]:
        """{ENV_NAME: value} for ``wanted`` = {ENV_NAME: secret name}; values decoded as UTF-8."""
        env: dict[str, str] = {}
        for var, name in wanted.items():
            raw = self.get(agency_id, name)
            try:
                env[var] = raw.decode()
            except UnicodeDecodeError:
                raise VaultError(f"secret {name!r} is not UTF-8 text and cannot go into ${var}") from None
            finally:
                raw[:] = bytes(len(raw))
        return env
