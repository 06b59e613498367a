"""Help, completions and the man page all come from the parser, and say what the options do."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from koradaemon.cli.parser import build_parser

REPO = Path(__file__).resolve().parent.parent
GEN = REPO / "scripts" / "gen_cli_files.py"


def _walk(p: argparse.ArgumentParser, prefix: str = "koradaemon") -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(prefix, p)]
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            seen: set[int] = set()
            for name, sub in a.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    out += _walk(sub, f"{prefix} {name}")
    return out


def test_every_option_has_help_and_every_command_examples() -> None:
    for where, p in _walk(build_parser()):
        if where != "koradaemon":
            assert p.epilog and "examples:\n  koradaemon" in p.epilog, f"{where} has no examples"
        for a in p._actions:
            if isinstance(a, argparse._HelpAction | argparse._VersionAction | argparse._SubParsersAction):
                continue
            assert a.help and len(a.help) > 15, f"{where} {a.option_strings or a.dest}: no help"
            takes_value = a.option_strings and a.nargs != 0
            if takes_value and not a.choices:
                assert "e.g." in a.help, f"{where} {a.option_strings}: no example in {a.help!r}"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("share")
    res = subprocess.run([sys.executable, str(GEN), str(out)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return out


@pytest.mark.parametrize("name", ["completion/koradaemon.bash", "completion/_koradaemon", "man/man1/koradaemon.1"])
def test_shipped_copies_are_current(generated: Path, name: str) -> None:
    assert (REPO / "share" / name).read_text() == (generated / name).read_text(), \
        f"share/{name} is stale: run scripts/gen_cli_files.py"


def _bash_complete(script: Path, words: list[str]) -> list[str]:
    line = " ".join(words)
    prog = f"""
source {script}
COMP_WORDS=({line})
COMP_CWORD={len(words) - 1}
COMP_LINE="{line}"
COMP_POINT=${{#COMP_LINE}}
_shtab_koradaemon koradaemon "{words[-1]}" "{words[-2]}"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    res = subprocess.run(["bash", "-c", prog], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def test_bash_completion_completes_commands_and_options(generated: Path) -> None:
    if not shutil.which("bash"):
        pytest.skip("no bash")
    script = generated / "completion" / "koradaemon.bash"
    assert "search" in _bash_complete(script, ["koradaemon", "sea"])
    assert "--limit" in _bash_complete(script, ["koradaemon", "search", "--li"])
    assert set(_bash_complete(script, ["koradaemon", "print-unit", ""])) >= {"systemd", "systemd-user", "launchd"}


def test_zsh_completion_parses(generated: Path) -> None:
    if not shutil.which("zsh"):
        pytest.skip("zsh is not installed here")
    res = subprocess.run(["zsh", "-n", str(generated / "completion" / "_koradaemon")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_man_page_renders(generated: Path) -> None:
    page = generated / "man" / "man1" / "koradaemon.1"
    text = page.read_text()
    assert text.startswith(".TH KORADAEMON 1") and '.SS "koradaemon search"' in text
    if shutil.which("groff"):
        res = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)], capture_output=True, text=True)
        assert res.returncode == 0 and res.stderr == "", res.stderr
    if not shutil.which("man"):
        pytest.skip("man is not installed: the page was produced and parsed only")
    res = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, timeout=60,
                         env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin", "MANPAGER": "cat", "PAGER": "cat"})
    assert res.returncode == 0, res.stderr
    for heading in ("KORADAEMON(1)", "GLOBAL OPTIONS", "koradaemon audit unlock", "--fts", "EXIT"):
        assert heading in res.stdout
