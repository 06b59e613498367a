"""The daemon sets umask 077 itself: whatever it creates is private to its user, whatever the caller's umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

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
        d.start()
    finally:
        os.umask(old)
    try:
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
    finally:
        assert d.stop() == 0
    assert loose(d.root, before) == [], "after the stop (final snapshot, checkpoint) too"
    # The test can fail: a file the daemon did not make private is reported.
    probe = d.root / "logs" / "probe"
    probe.touch()
    probe.chmod(0o644)
    assert loose(d.root, before) == ["logs/probe -rw-r--r--"]
