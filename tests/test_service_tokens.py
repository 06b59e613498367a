"""Agency token files: permissions, stability, constant-time check, concurrent creation."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from koradaemon.errors import AuthError, PathError
from koradaemon.service.tokens import TokenStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ensure_creates_private_token_once(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "run" / "tokens")
    token = store.ensure("demo")
    assert len(token) >= 43  # 32 random bytes, urlsafe base64
    path = store.path("demo")
    assert path.read_text().strip() == token
    assert mode(path) == 0o600
    assert mode(store.directory) == 0o700
    assert store.ensure("demo") == token
    assert store.read("demo") == token
    assert TokenStore(store.directory).ensure("other") != token
    assert sorted(p.name for p in store.directory.iterdir()) == ["demo.token", "other.token"]


def test_existing_directory_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "tokens"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    TokenStore(directory).ensure("demo")
    assert mode(directory) == 0o700


def test_check(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    token = store.ensure("demo")
    other = store.ensure("beta")
    assert store.check("demo", token)
    assert not store.check("demo", other)
    assert not store.check("demo", token[:-1])
    assert not store.check("demo", "")
    assert not store.check("nobody", token)
    assert not store.check("../demo", token)
    assert not store.check("demo", "é" + token)


def test_empty_token_file_is_replaced(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    store.path("demo").write_text("")
    assert not store.check("demo", "")
    token = store.ensure("demo")
    assert token and store.read("demo") == token


def test_read_missing_and_invalid(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    with pytest.raises(AuthError):
        store.read("demo")
    for bad in ("../x", "a/b", "", "Demo", "x\x00"):
        with pytest.raises(PathError):
            store.ensure(bad)


def test_concurrent_ensure_agrees_on_one_token(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "t")
    seen: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait(10)
        token = TokenStore(store.directory).ensure("demo")
        with lock:
            seen.append(token)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(seen) == 8 and len(set(seen)) == 1
    assert store.read("demo") == seen[0]
    assert [p.name for p in store.directory.iterdir()] == ["demo.token"]


def test_check_follows_a_token_replaced_or_rewritten_on_disk(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens")
    first = store.ensure("demo")
    assert store.check("demo", first)
    path = store.path("demo")
    # Replaced by rename (a new inode), same length as the old token.
    second = "B" * len(first)
    tmp = path.with_name("new.tmp")
    tmp.write_text(second + "\n")
    os.replace(tmp, path)
    assert store.check("demo", second)
    assert not store.check("demo", first)
    # Rewritten in place with another length (same inode).
    third = "C" * (len(first) + 5)
    path.write_text(third + "\n")
    assert store.check("demo", third)
    assert not store.check("demo", second)
    # Removed: nothing is accepted any more, not even the token last seen.
    path.unlink()
    assert not store.check("demo", third)
