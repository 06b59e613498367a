"""Ignore rules: gitignore subset, checked against git itself where git is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from koradaemon.watch.ignore import IgnoreRules, parse_line

GITIGNORE = """\
# comment
*.log
!important.log
build/
/only_top.txt
docs/**/*.tmpx
**/cache
a/**/z
\\#hash
trailing\\\x20
data/*.csv
[abc]x.md
!keep/
keep/*.o
"""

PATHS = [
    ("x.log", False), ("sub/y.log", False), ("important.log", False), ("sub/important.log", False),
    ("build", True), ("build/out.md", False), ("src/build", True), ("src/build/x", False), ("build.md", False),
    ("only_top.txt", False), ("sub/only_top.txt", False), ("docs/a/b/c.tmpx", False), ("docs/c.tmpx", False),
    ("cache", True), ("deep/er/cache", True), ("deep/er/cache/f", False), ("a/z", False), ("a/b/c/z", False),
    ("#hash", False), ("trailing ", False), ("data/1.csv", False), ("data/sub/1.csv", False), ("ax.md", False),
    ("dx.md", False), ("keep/k.o", False), ("keep/k.c", False), ("plain.md", False),
]


def rules_for(tmp_path: Path, text: str, globs: tuple[str, ...] = ()) -> IgnoreRules:
    (tmp_path / ".gitignore").write_text(text)
    return IgnoreRules(tmp_path, globs, builtin=False)


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_same_answers_as_git_check_ignore(tmp_path: Path) -> None:
    rules = rules_for(tmp_path, GITIGNORE)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for path, is_dir in PATHS:
        p = tmp_path / path
        if is_dir:
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("x")
    names = [p for p, _ in PATHS]
    out = subprocess.run(["git", "-C", str(tmp_path), "check-ignore", "--stdin"], input="\n".join(names),
                         capture_output=True, text=True, check=False).stdout
    git_says = set(out.splitlines())
    ours = {p for p, d in PATHS if rules.is_ignored(p, d)}
    assert ours == git_says


def test_nested_ignore_files_are_relative_to_their_directory(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / ".koraignore").write_text("/anchored.md\nloose.md\n!again.md\n")
    (tmp_path / "sub" / "deeper" / ".gitignore").write_text("*.txt\n")
    (tmp_path / ".gitignore").write_text("again.md\n")
    rules = IgnoreRules(tmp_path, builtin=False)
    assert rules.is_ignored("sub/anchored.md") and not rules.is_ignored("sub/deeper/anchored.md")
    assert not rules.is_ignored("anchored.md")
    assert rules.is_ignored("sub/deeper/loose.md") and not rules.is_ignored("loose.md")
    assert rules.is_ignored("again.md") and not rules.is_ignored("sub/again.md")
    assert rules.is_ignored("sub/deeper/x.txt") and not rules.is_ignored("sub/x.txt")


def test_config_globs_win_and_builtins_cover_editor_files(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("!*.db\n")
    rules = IgnoreRules.for_root(tmp_path, ("kora_kernel.db", "private/"))
    assert rules.is_ignored("kora_kernel.db") and rules.is_ignored("x/kora_kernel.db")
    assert rules.is_ignored("private/a.md") and not rules.is_ignored("private.md")
    for name in ("a.swp", ".a.md.swx", "a.md~", ".#a.md", "4913", "x.tmp", ".git/HEAD", ".goutputstream-AB12"):
        assert rules.is_ignored(name), name
    assert not rules.is_ignored("notes.md")


def test_ignored_directory_cannot_be_reentered_by_negation(tmp_path: Path) -> None:
    rules = rules_for(tmp_path, "secret/\n!secret/open.md\n")
    assert rules.is_ignored("secret/open.md")


def test_ignore_files_inside_ignored_directories_are_not_read(tmp_path: Path) -> None:
    (tmp_path / "node_modules" / "pkg").mkdir(parents=True)
    (tmp_path / "node_modules" / "pkg" / ".gitignore").write_text("*.md\n")
    rules = rules_for(tmp_path, "node_modules/\n")
    assert not any(r.source.startswith("node_modules") for r in rules._rules)


def test_reload_picks_up_changes(tmp_path: Path) -> None:
    rules = rules_for(tmp_path, "*.a\n")
    assert rules.is_ignored("x.a") and not rules.is_ignored("x.b")
    (tmp_path / ".gitignore").write_text("*.b\n")
    rules.reload()
    assert rules.is_ignored("x.b") and not rules.is_ignored("x.a")


@pytest.mark.parametrize("line", ["", "   ", "# note", "!", "/"])
def test_blank_and_comment_lines_give_no_rule(line: str) -> None:
    assert parse_line(line) is None
