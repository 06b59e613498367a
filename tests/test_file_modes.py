"""The daemon sets umask 077 itself: whatever it creates is private to its user, whatever the caller's umask."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DaemonProc, wait_for


def tree(root: Path) -> Iterator[Path]:
    yield root
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            yield Path(dirpath) / name


def loose(root: Path, before: set[Path]) -> list[str]:
    """Every path the daemon created under ``root`` that group or others can use, with its mode."""
    out = []
    for path in tree(root):
        if path in before:
            continue
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue
        if stat.S_IMODE(mode) & 0o077:
            out.append(f"{path.relative_to(root)} {stat.filemode(mode)}")
    return out


def test_everything_the_daemon_creates_is_private_under_umask_022(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path / "root")
    (d.root / "alpha" / "notes" / "a.md").write_text("private modes: samphire\n")
    (d.root / "alpha" / "state" / "s.txt").write_text("agent state\n")
    d.log.touch()  # the test's capture of the daemon's output, not the daemon's file
    before = set(tree(d.root))
    old = os.umask(0o022)  # the caller's umask; the child inherits it
    try:
        d.start(wait_ready=False)
    finally:
        os.umask(old)
    try:
        d.wait_ready()
        wait_for(lambda: d.search("samphire"), 30, what="indexed")
        d.client_call("snapshot")
        d.client_call("vault.put_context", name="ctx", content="remember this")
        created = {p.relative_to(d.root).as_posix() for p in tree(d.root)} - {
            p.relative_to(d.root).as_posix() for p in before}
        # What must be there while it runs (so the check below covers it).
        for name in ("kora_kernel.db", "kora_kernel.db-wal", "kora_kernel.db-shm", "logs/koradaemon.log",
                     "run/koradaemon.sock", "run/tokens/alpha.token", "audit/alpha", "snapshots/alpha"):
            assert name in created, f"{name} not created (got {sorted(created)})"
        assert stat.S_ISSOCK((d.root / "run" / "koradaemon.sock").lstat().st_mode)
        assert loose(d.root, before) == []
        assert d.stop() == 0
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
    assert loose(d.root, before) == [], "after the stop (final snapshot, checkpoint) too"
    # The test can fail: a file the daemon did not make private is reported.
    probe = d.root / "logs" / "probe"
    probe.touch()
    probe.chmod(0o644)
    assert loose(d.root, before) == ["logs/probe -rw-r--r--"]


OTHER_USER = "kora-t-other"


@pytest.fixture
def other_user() -> Iterator[str]:
    """An unprivileged local user created for the test (the suite runs as root)."""
    useradd, userdel = shutil.which("useradd"), shutil.which("userdel")
    if os.geteuid() != 0 or useradd is None or userdel is None:
        pytest.skip("needs root and useradd to create an unprivileged user")
    created = subprocess.run([useradd, "--system", "--no-create-home", OTHER_USER], capture_output=True).returncode == 0
    try:
        pwd.getpwnam(OTHER_USER)
    except KeyError:
        pytest.skip("could not create a test user")
    yield OTHER_USER
    if created:
        subprocess.run([userdel, OTHER_USER], capture_output=True)


def test_another_local_user_cannot_read_what_the_daemon_wrote(other_user: str) -> None:
    base = Path(tempfile.mkdtemp(prefix="kfm"))
    try:
        base.chmod(0o711)  # others may pass through (as through a home folder), not list
        d = DaemonProc(base / "root")
        d.root.chmod(0o711)
        (d.root / "alpha" / "notes" / "a.md").write_text("private: samphire\n")
        try:
            d.start()
            wait_for(lambda: d.search("samphire"), 30, what="indexed")
            cat = shutil.which("cat")
            assert cat is not None
            for rel in ("kora_kernel.db", "kora_kernel.db-wal", "logs/koradaemon.log", "run/tokens/alpha.token",
                        "audit/alpha/audit-000000.jsonl"):
                res = subprocess.run([cat, os.fspath(d.root / rel)], user=other_user, capture_output=True, text=True)
                assert res.returncode != 0 and "Permission denied" in res.stderr, (rel, res.stderr)
            # The check can fail: a file that is readable to others is read by that user.
            (d.root / "public.txt").write_text("readable\n")
            (d.root / "public.txt").chmod(0o644)
            res = subprocess.run([cat, os.fspath(d.root / "public.txt")], user=other_user, capture_output=True,
                                 text=True)
            assert res.stdout == "readable\n"
            assert d.stop() == 0
        finally:
            if d.proc is not None and d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait()
    finally:
        shutil.rmtree(base, ignore_errors=True)
