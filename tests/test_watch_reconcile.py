"""Crawl and reconcile: a root changed while nobody watched converges to the disk."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from conftest import run_as_user

from koradaemon.watch.changes import ChangeKind
from koradaemon.watch.crawl import CrawlStats, crawl
from koradaemon.watch.ignore import IgnoreRules
from koradaemon.watch.known import KnownFiles
from koradaemon.watch.reconcile import reconcile


def index_of(root: Path, rules: IgnoreRules) -> dict[str, tuple[int, int]]:
    """What an index that is up to date would know, computed independently of the crawl under test
    (os.walk + os.stat, regular files only, the rules' verdict per path)."""
    out: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        dirnames[:] = [d for d in dirnames if not rules.is_ignored(f"{rel_dir}/{d}" if rel_dir else d, True)
                       and not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            full = os.path.join(dirpath, name)
            if rules.is_ignored(rel) or (os.path.islink(full) and not os.path.realpath(full).startswith(
                    os.path.realpath(root) + os.sep)):
                continue
            try:
                st = os.stat(full)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                out[rel] = (st.st_size, st.st_mtime_ns)
    return out


def test_crawl_lists_regular_files_only_and_keeps_symlinks_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "e" / "f.md").write_text("12345")
    (root / "skip.log").write_text("x")
    (tmp_path / "outside.md").write_text("secret")
    (root / "out.md").symlink_to(tmp_path / "outside.md")
    (root / "in.md").symlink_to(root / "d" / "e" / "f.md")
    (root / "dirlink").symlink_to(root / "d", target_is_directory=True)
    (root / "outdir").symlink_to(tmp_path, target_is_directory=True)
    os.mkfifo(root / "pipe")
    st = CrawlStats()
    entries = {e.path: e for e in crawl(root, IgnoreRules.for_root(root, ("*.log",)), st)}
    assert set(entries) == {"d/e/f.md", "in.md"}
    link_target = os.readlink(root / "in.md")  # a link is listed with its own lstat figures
    assert entries["d/e/f.md"].size == 5 and entries["in.md"].size == len(os.fsencode(link_target))
    assert st.skipped >= 2 and st.dirs == 3


def test_unreadable_directory_is_skipped_and_its_files_not_deleted(unprivileged_user: tuple[int, int]) -> None:
    """Run as a created unprivileged user: a folder it cannot list is skipped, and the files the index
    holds below it are not taken for deleted."""
    import tempfile

    uid, gid = unprivileged_user
    with tempfile.TemporaryDirectory(prefix="kora-unreadable-") as scratch:  # pytest's tmp is root's 0700
        base = Path(scratch)
        base.chmod(0o755)
        root = base / "root"
        (root / "locked").mkdir(parents=True)
        (root / "locked" / "a.md").write_text("a")
        (root / "b.md").write_text("b")
        for p in (root, root / "b.md"):
            os.chown(p, uid, gid)
        rules = IgnoreRules.for_root(root)
        known = index_of(root, rules)
        assert set(known) == {"locked/a.md", "b.md"}
        (root / "locked").chmod(0o700)  # root's folder: the user cannot list it

        def reconcile_as_user() -> str:
            stats = CrawlStats()
            changes = list(reconcile("a1", "r", root, IgnoreRules.for_root(root), known, stats=stats))
            return repr(([(c.kind.name, c.path) for c in changes], stats.errors, stats.failed_dirs))

        assert run_as_user(uid, gid, reconcile_as_user) == repr(([], 1, ["locked"]))


def test_reconcile_after_offline_changes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    for name in ("same.md", "edited.md", "gone.md", "sub/moved.md", "later-ignored.md"):
        (root / name).write_text(name)
    rules = IgnoreRules.for_root(root)
    known = index_of(root, rules)
    # the daemon is down: edit, delete, add, move, ignore
    (root / "edited.md").write_text("edited, longer content")
    (root / "gone.md").unlink()
    (root / "new.md").write_text("new")
    (root / "sub" / "moved.md").rename(root / "moved.md")
    (root / ".koraignore").write_text("later-ignored.md\n")
    rules.reload()
    changes = list(reconcile("a1", "r", root, rules, known))
    got = {(c.kind, c.path) for c in changes}
    assert got == {
        (ChangeKind.INDEX, "edited.md"), (ChangeKind.INDEX, "new.md"), (ChangeKind.INDEX, "moved.md"),
        (ChangeKind.INDEX, ".koraignore"), (ChangeKind.DELETE, "gone.md"), (ChangeKind.DELETE, "sub/moved.md"),
        (ChangeKind.DELETE, "later-ignored.md"),
    }
    assert all(c.bulk and c.agency_id == "a1" and c.root == "r" for c in changes)
    # applying them converges: a second pass has nothing to do
    assert list(reconcile("a1", "r", root, rules, index_of(root, rules))) == []


def test_touched_file_with_same_content_is_offered_for_hashing(tmp_path: Path) -> None:
    root = tmp_path
    (root / "a.md").write_text("same")
    rules = IgnoreRules.for_root(root)
    known = index_of(root, rules)
    st = os.stat(root / "a.md")
    os.utime(root / "a.md", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert [(c.kind, c.path) for c in reconcile("a1", "r", root, rules, known)] == [(ChangeKind.INDEX, "a.md")]


def test_missing_root_deletes_nothing(tmp_path: Path) -> None:
    rules = IgnoreRules.for_root(tmp_path / "nope")
    assert list(reconcile("a1", "r", tmp_path / "nope", rules, {"a.md": (1, 1)})) == []


def test_new_files_are_marked_unindexed_changed_ones_are_not(tmp_path: Path) -> None:
    (tmp_path / "new.md").write_text("new\n")
    (tmp_path / "old.md").write_text("changed since it was indexed\n")
    known = {"old.md": (1, 1)}
    marks = {c.path: c.unindexed for c in reconcile("a1", "r", tmp_path, IgnoreRules.for_root(tmp_path), known)}
    assert marks == {"new.md": True, "old.md": False}


def test_known_files_found_by_path_whatever_order_they_come_in() -> None:
    rows = [("b/x", 3, 30), ("a", 1, 10), ("caf\udce9", 4, 40), ("b", 2, 20), ("café", 5, 50)]
    known = KnownFiles(iter(rows))
    assert len(known) == 5
    assert known.take("b") == (2, 20) and known.take("caf\udce9") == (4, 40) and known.take("café") == (5, 50)
    assert known.take("nope") is None and known.take("b/") is None
    assert list(known.not_taken()) == ["a", "b/x"]
    assert KnownFiles.of({}).take("a") is None and list(KnownFiles.of({}).not_taken()) == []
