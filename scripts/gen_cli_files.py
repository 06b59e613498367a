#!/usr/bin/env python3
"""Write the shell completions and the man page, all generated from the CLI's argument parser.

Usage: scripts/gen_cli_files.py [OUT_DIR]     (default: share/ in the repository)

    OUT_DIR/completion/koradaemon.bash   bash: source it, or install into
                                         /usr/share/bash-completion/completions/koradaemon
    OUT_DIR/completion/_koradaemon       zsh: put it in a folder on $fpath
    OUT_DIR/man/man1/koradaemon.1        man -l OUT_DIR/man/man1/koradaemon.1

Run it whenever an option changes; tests/test_cli_docs.py fails while the copies in share/ are stale.
Needs shtab (in the dev extra).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ["COLUMNS"] = "80"  # usage lines wrap the same way on every machine
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from koradaemon import __version__  # noqa: E402
from koradaemon.cli.parser import CONFIG_ORDER, EPILOG, EXIT_CODES, build_parser  # noqa: E402


def roff(text: str) -> str:
    out = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line for line in out.splitlines())


def _subparsers(p: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: dict[int, str] = {}
            for name, sub in action.choices.items():
                seen.setdefault(id(sub), name)
            return [(name, action.choices[name]) for name in seen.values()]
    return []


def _options(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> list[str]:
    lines = []
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction | argparse._HelpAction) or a.help == argparse.SUPPRESS:
            continue
        if any(o in skip for o in a.option_strings):
            continue
        meta = a.metavar or (a.dest.upper() if a.option_strings else a.dest)
        takes = a.nargs != 0
        if a.option_strings:
            names = ", ".join(f"\\fB{roff(o)}\\fR" for o in a.option_strings)
            head = names + (f" \\fI{roff(str(meta))}\\fR" if takes else "")
        else:
            head = f"\\fI{roff(str(meta))}\\fR"
        choices = f" (one of: {', '.join(map(str, a.choices))})" if a.choices and not a.metavar else ""
        lines += [".TP", head, roff((a.help or "") + choices)]
    return lines


def _command(prefix: str, name: str, p: argparse.ArgumentParser) -> list[str]:
    usage = p.format_usage().replace("usage: ", "").strip()
    lines = [f'.SS "{roff(prefix + name)}"', roff(p.description or ""), ".PP", ".nf", roff(usage), ".fi"]
    lines += _options(p, skip=("-c", "--config", "--data-root"))
    if p.epilog:
        lines += [".PP", ".nf", roff(p.epilog.rstrip()), ".fi"]
    for sub_name, sub in _subparsers(p):
        lines += _command(f"{prefix}{name} ", sub_name, sub)
    return lines


def manpage() -> str:
    p = build_parser()
    lines = [
        f'.TH KORADAEMON 1 "" "koradaemon {__version__}" "User Commands"',
        ".SH NAME", "koradaemon \\- " + roff(p.description or ""),
        ".SH SYNOPSIS", ".B koradaemon", "[\\fB\\-c\\fR \\fIFILE\\fR] [\\fB\\-\\-data\\-root\\fR \\fIDIR\\fR] "
        "\\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        "The global options may also follow the command. Commands that read or change a running "
        "daemon's data go through its control socket; with no daemon running they work on the data "
        "root directly, and read-only commands never write there.",
        ".SH GLOBAL OPTIONS", *_options(p),
        ".SH COMMANDS",
    ]
    for name, sub in _subparsers(p):
        lines += _command("koradaemon ", name, sub)
    lines += [".SH EXIT STATUS"]
    for code, text in EXIT_CODES:
        lines += [".TP", f"\\fB{code}\\fR", roff(text)]
    lines += [".SH FILES", roff(f"The config file is the first found of: {CONFIG_ORDER}. The data root is "
                                "--data-root, $KORA_DATA_ROOT, $STATE_DIRECTORY, else the config's folder "
                                "(~/.local/state/koradaemon for ~/.config/koradaemon, /var/lib/koradaemon for "
                                "/etc/koradaemon)."),
              ".SH EXAMPLES", ".nf", roff(EPILOG.split("examples:\n", 1)[1].rstrip()), ".fi",
              ".SH SEE ALSO", "The project's README.md and docs/ (service.md, search.md, performance.md)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    import shtab

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "share"
    (out / "completion").mkdir(parents=True, exist_ok=True)
    (out / "man" / "man1").mkdir(parents=True, exist_ok=True)
    parser = build_parser()
    (out / "completion" / "koradaemon.bash").write_text(shtab.complete(parser, "bash"))
    (out / "completion" / "_koradaemon").write_text(shtab.complete(parser, "zsh"))
    (out / "man" / "man1" / "koradaemon.1").write_text(manpage())
    print(f"wrote {out}/completion/koradaemon.bash, {out}/completion/_koradaemon, {out}/man/man1/koradaemon.1")


if __name__ == "__main__":
    main()
