"""Passphrase files, credential paths, derivation once per unlock, zeroing and idle auto-lock."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from koradaemon.errors import KoraError, VaultError
from koradaemon.vault.keys import KeyHolder, load_passphrase, resolve_passphrase_path


def secret(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize(("raw", "expect"), [
    (b"pw\n", b"pw"), (b"pw", b"pw"), (b"pw\r\n", b"pw"), (b"pw\n\n", b"pw\n"), (b" pw \n", b" pw "),
])
def test_load_passphrase_strips_one_newline(tmp_path: Path, raw: bytes, expect: bytes) -> None:
    buf = load_passphrase(secret(tmp_path / "p", raw))
    assert isinstance(buf, bytearray) and bytes(buf) == expect


@pytest.mark.parametrize("raw", [b"", b"\n"])
def test_empty_passphrase_refused(tmp_path: Path, raw: bytes) -> None:
    with pytest.raises(VaultError, match="empty"):
        load_passphrase(secret(tmp_path / "p", raw))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_group_or_world_readable_refused(tmp_path: Path, mode: int) -> None:
    with pytest.raises(VaultError, match="readable by group or others"):
        load_passphrase(secret(tmp_path / "p", b"pw", mode))


def test_missing_or_not_regular(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="cannot be read"):
        load_passphrase(tmp_path / "nope")
    (tmp_path / "d").mkdir(mode=0o700)
    with pytest.raises(VaultError, match="not a regular file"):
        load_passphrase(tmp_path / "d")


def test_resolve_relative_and_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_passphrase_path("secrets/pass", tmp_path) == tmp_path / "secrets" / "pass"
    creds = tmp_path / "creds"
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert resolve_passphrase_path("credential:vault", tmp_path) == creds / "vault"
    for bad in ("credential:", "credential:../x", "credential:a/b"):
        with pytest.raises(VaultError):
            resolve_passphrase_path(bad, tmp_path)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(VaultError, match="CREDENTIALS_DIRECTORY"):
        resolve_passphrase_path("credential:vault", tmp_path)


@pytest.mark.parametrize("spec", ["/etc/passphrase", "../outside", "a/../../b"])
def test_resolve_refuses_absolute_and_dotdot(tmp_path: Path, spec: str) -> None:
    with pytest.raises(KoraError):
        resolve_passphrase_path(spec, tmp_path)


def test_credential_file_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    secret(creds / "vault", b"from systemd\n", 0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    holder = KeyHolder(resolve_passphrase_path("credential:vault", tmp_path), idle_lock_s=60)
    holder.unlock()
    assert not holder.is_locked


@pytest.mark.parametrize("iterations", [1, 100_000, 599_999, 10_000_001])
def test_holder_rejects_iteration_bounds(tmp_path: Path, iterations: int) -> None:
    with pytest.raises(VaultError, match="iteration count"):
        KeyHolder(secret(tmp_path / "p", b"pw"), idle_lock_s=60, iterations=iterations)
    holder = KeyHolder(secret(tmp_path / "p", b"pw"), idle_lock_s=60)
    with capture_logs() as logs, pytest.raises(VaultError, match="iteration count"):
        holder.file_key(holder.salt, iterations, bytes(16))
    assert not [e for e in logs if e["event"] == "vault_unlocked"]


def test_derives_once_per_unlock_and_zeroes_on_lock(tmp_path: Path) -> None:
    holder = KeyHolder(secret(tmp_path / "p", b"pw\n"), idle_lock_s=60)
    assert holder.is_locked
    with capture_logs() as logs:
        k1 = holder.file_key(holder.salt, holder.iterations, b"a" * 16)
        k2 = holder.file_key(holder.salt, holder.iterations, b"b" * 16)
        k1b = holder.file_key(holder.salt, holder.iterations, b"a" * 16)
    assert [e["event"] for e in logs].count("vault_unlocked") == 1
    assert k1 == k1b and k1 != k2 and len(k1) == 32
    assert not holder.is_locked
    masters = list(holder._keys.values())
    assert masters and all(any(m) for m in masters)
    holder.lock()
    assert holder.is_locked and all(not any(m) for m in masters)


def test_same_passphrase_same_salt_gives_same_key(tmp_path: Path) -> None:
    a = KeyHolder(secret(tmp_path / "p", b"pw"), idle_lock_s=60)
    b = KeyHolder(secret(tmp_path / "q", b"pw"), idle_lock_s=60)
    c = KeyHolder(secret(tmp_path / "r", b"other"), idle_lock_s=60)
    fid = bytes(16)
    assert a.file_key(a.salt, 600_000, fid) == b.file_key(a.salt, 600_000, fid)
    assert a.file_key(a.salt, 600_000, fid) != c.file_key(a.salt, 600_000, fid)
    assert a.salt != b.salt


def test_idle_auto_lock(tmp_path: Path) -> None:
    clock = Clock()
    holder = KeyHolder(secret(tmp_path / "p", b"pw"), idle_lock_s=30, clock=clock)
    holder.unlock()
    masters = list(holder._keys.values())
    clock.t += 29
    assert not holder.maybe_lock() and not holder.is_locked
    holder.file_key(holder.salt, holder.iterations, bytes(16))  # use resets the idle timer
    clock.t += 29
    assert not holder.maybe_lock()
    clock.t += 1
    assert holder.maybe_lock() and holder.is_locked
    assert all(not any(m) for m in masters)
    assert not holder.maybe_lock()


def test_auto_lock_checked_on_access(tmp_path: Path) -> None:
    clock = Clock()
    holder = KeyHolder(secret(tmp_path / "p", b"pw"), idle_lock_s=5, clock=clock)
    holder.unlock()
    old = list(holder._keys.values())
    clock.t += 10
    with capture_logs() as logs:
        holder.file_key(holder.salt, holder.iterations, bytes(16))
    events = [e["event"] for e in logs]
    assert events == ["vault_locked", "vault_unlocked"]
    assert all(not any(m) for m in old)


def test_passphrase_removed_after_unlock_fails_next_derivation(tmp_path: Path) -> None:
    path = secret(tmp_path / "p", b"pw")
    holder = KeyHolder(path, idle_lock_s=60)
    holder.unlock()
    path.unlink()
    holder.file_key(holder.salt, holder.iterations, bytes(16))  # cached: still fine
    with pytest.raises(VaultError, match="cannot be read"):
        holder.file_key(bytes(16), holder.iterations, bytes(16))
