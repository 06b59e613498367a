"""The argument parser: every command, option, help text and example in one place.

Global options (``-c/--config``, ``--data-root``) are accepted before or after the subcommand.
A usage error is one line on stderr and exit 64 (sysexits EX_USAGE), never argparse's 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from .. import __version__
from .fastargs import COLORS, MODES, SEARCH_MAX_LIMIT

TYPE_CHECKING = False  # typing is not imported at run time: this module is on every CLI call
if TYPE_CHECKING:
    from typing import NoReturn

EX_USAGE = 64

EXIT_CODES = (
    (0, "ok (status: running, ready, every agency ok)"),
    (64, "usage: a bad option, argument, agency or snapshot id"),
    (65, "bad data: a failed audit verification, a bad query, a file not in the index"),
    (69, "unavailable: the daemon is not running (status, tail) or never ran on this data root"),
    (70, "internal error (a bug: please report it)"),
    (74, "I/O error"),
    (75, "temporary: busy (another koradaemon holds the data root), starting or degraded (status)"),
    (77, "refused: lockdown, permission denied, a token this user cannot read"),
    (78, "configuration: no or a bad config file, a data root that does not exist"),
)
CONFIG_ORDER = ("--config, $KORA_CONFIG, $CONFIGURATION_DIRECTORY/koradaemon.yaml, ./koradaemon.yaml, "
                "~/.config/koradaemon/koradaemon.yaml, /etc/koradaemon/koradaemon.yaml")

EPILOG = (
    "exit codes:\n  " + ", ".join(f"{code} {text.split(':')[0].split(' (')[0]}" for code, text in EXIT_CODES[:5])
    + ",\n  " + ", ".join(f"{code} {text.split(':')[0].split(' (')[0]}" for code, text in EXIT_CODES[5:]) + "\n"
    "config file, the first found:\n  " + CONFIG_ORDER.replace(", ~", ",\n  ~") + "\n\n"
    """examples:
  koradaemon init --data-root ~/kora          # a config, a vault passphrase and a data root
  koradaemon -c ~/kora/koradaemon.yaml run    # run in the foreground
  koradaemon status                           # health check: exit 0 only when all is well
  koradaemon search --agency demo 'invoice 2024'
"""
)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit 64."""

    json_errors = False  # set by parse() when --json is on the command line

    def error(self, message: str) -> NoReturn:
        hint = f"see '{self.prog} --help'"
        if Parser.json_errors:
            import json

            body = {"error": "usage", "message": f"{self.prog}: {message}", "exit_code": EX_USAGE, "hint": hint}
            self.exit(EX_USAGE, json.dumps(body, ensure_ascii=False) + "\n")
        self.exit(EX_USAGE, f"{self.prog}: error: {message} ({hint})\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter, told the width so that it need not import shutil on every call."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=_width())


def _width() -> int:
    try:
        columns = int(os.environ.get("COLUMNS", "0")) or os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        columns = 80
    return max(columns - 2, 40)


def _globals(p: argparse.ArgumentParser, *, suppress: bool) -> None:
    """-c/--config and --data-root; on subcommands their default is SUPPRESS so they never reset the top's."""
    default = argparse.SUPPRESS if suppress else None
    p.add_argument("-c", "--config", default=default, metavar="FILE",
                   help="YAML config file, e.g. -c /etc/koradaemon/koradaemon.yaml (default: the first found, "
                        "see 'koradaemon --help')")
    p.add_argument("--data-root", default=default, metavar="DIR",
                   help="data root holding the index, audit log and snapshots, e.g. --data-root /var/lib/koradaemon "
                        "(default: $KORA_DATA_ROOT, $STATE_DIRECTORY, else beside the config); never created "
                        "except by 'init'")


def _agency(p: argparse.ArgumentParser, what: str = "the agency (default: the only agency of the config)") -> None:
    p.add_argument("--agency", metavar="ID", help=f"{what}, e.g. --agency demo")


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print the result as JSON on stdout (errors as JSON on stderr), e.g. --json | jq .")


def _positive(limit: int, lo: int = 0) -> type[int]:
    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not lo <= value <= limit:
            raise argparse.ArgumentTypeError(f"{value} is out of range {lo}..{limit}")
        return value

    check.__name__ = "number"
    return check  # type: ignore[return-value]


_ONLY: str | None = None  # set by build_parser(only=)


class _Skip(Exception):
    """Raised by :func:`_add` for a command this call does not run (see ``build_parser(only=)``)."""


def _add(sub: argparse._SubParsersAction[Parser], name: str, help_: str, examples: str,
         aliases: tuple[str, ...] = ()) -> Parser:
    p = sub.add_parser(name, help=help_, description=help_, aliases=list(aliases),
                       epilog="examples:\n" + examples, formatter_class=_Formatter)
    if _ONLY is not None and name != _ONLY and _ONLY not in aliases and sub.dest == "cmd":
        raise _Skip
    _globals(p, suppress=True)
    return p


def _cheap_gettext() -> None:
    """argparse looks each of its messages up with gettext, a search for message catalogs per call
    (~50 per parser, a quarter of a CLI call's time). Python ships no catalogs for argparse and the
    help text is English, so its messages are used as they are."""
    argparse._ = str  # type: ignore[attr-defined]


def build_parser(only: str | None = None) -> Parser:
    """The whole parser; with ``only``, the other commands get their name and help but no options
    (a CLI call builds just the command it runs)."""
    global _ONLY
    _cheap_gettext()
    _ONLY = only
    p = Parser(prog="koradaemon", description="KORA OS data engine: watch, index, audit, snapshot and supervise "
               "an AI agent's folders.", epilog=EPILOG, formatter_class=_Formatter)
    p.add_argument("--version", action="version", version=f"koradaemon {__version__}")
    _globals(p, suppress=False)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for add in (_run, _check_config, _status, _search, _files, _show, _tail, _snapshot, _snapshots, _restore,
                _audit, _init, _print_unit, _mcp, _secret, _logs):
        with contextlib.suppress(_Skip):
            add(sub)
    return p


def _run(sub: argparse._SubParsersAction[Parser]) -> None:
    _add(sub, "run", "run the daemon in the foreground until SIGTERM/SIGINT",
         "  koradaemon run -c ~/kora/koradaemon.yaml\n")


def _check_config(sub: argparse._SubParsersAction[Parser]) -> None:
    _add(sub, "check-config", "validate the configuration and print what it declares",
         "  koradaemon check-config -c koradaemon.yaml\n")


def _status(sub: argparse._SubParsersAction[Parser]) -> None:
    st = _add(sub, "status", "show the daemon's status; a health check: 0 only when running and every agency ok "
              "(69 not running, 75 starting or degraded, 77 lockdown)",
              "  koradaemon status\n  koradaemon status --agency demo --json\n")
    _agency(st, "show only this agency (default: every agency whose token you can read)")
    _json(st)


def _search(sub: argparse._SubParsersAction[Parser]) -> None:
    se = _add(sub, "search", "full-text search one agency's index; hits grouped by file with line numbers",
              "  koradaemon search --agency demo invoice\n"
              "  koradaemon search --agency demo '\"exact phrase\" draft*' --limit 50 --offset 50\n"
              "  koradaemon search --agency demo --fts 'NEAR(alpha beta, 5)'\n"
              "  koradaemon search --agency demo --json invoice | jq '.hits[0]'\n")
    _agency(se)
    se.add_argument("--limit", type=_positive(SEARCH_MAX_LIMIT, 1), default=10, metavar="N",
                    help=f"at most N hits, 1..{SEARCH_MAX_LIMIT} (default 10), e.g. --limit 100")
    se.add_argument("--offset", type=_positive(1_000_000), default=0, metavar="N",
                    help="skip the first N hits (paging), e.g. --offset 10")
    se.add_argument("--fts", action="store_true",
                    help="pass QUERY to SQLite FTS5 unchanged (its raw syntax), e.g. --fts 'a NEAR b'")
    se.add_argument("--mode", choices=MODES,
                    help="keyword (FTS5), vector (embeddings) or hybrid (both, fused); default: hybrid once the "
                    "agency has vectors, else keyword, e.g. --mode vector")
    se.add_argument("--color", choices=COLORS, default="auto",
                    help="highlight matches in colour: auto (on a terminal), always, never (default auto)")
    _json(se)
    se.add_argument("query", metavar="QUERY", help="words, \"phrases\", prefix*, -exclude, a OR b")


def _files(sub: argparse._SubParsersAction[Parser]) -> None:
    fi = _add(sub, "files", "list an agency's indexed files (size, chunks, indexed time) or, with --skipped, "
              "the files it skipped and why",
              "  koradaemon files --agency demo\n  koradaemon files --agency demo --skipped\n")
    _agency(fi)
    fi.add_argument("--skipped", action="store_true", help="list skipped files with the reason instead")
    fi.add_argument("--limit", type=_positive(1_000_000, 1), default=1000, metavar="N",
                    help="at most N files (default 1000), e.g. --limit 50")
    fi.add_argument("--offset", type=_positive(100_000_000), default=0, metavar="N",
                    help="skip the first N files (paging), e.g. --offset 1000")
    _json(fi)


def _show(sub: argparse._SubParsersAction[Parser]) -> None:
    sh = _add(sub, "show", "print a hit's chunk (REF from 'search') or a file's indexed text (ROOT/PATH[:LINE])",
              "  koradaemon show --agency demo demo/notes/todo.md\n"
              "  koradaemon show --agency demo demo/notes/todo.md:40 --lines 10\n"
              "  koradaemon show --agency demo 'demo/notes/todo.md@0+51200'\n")
    _agency(sh)
    sh.add_argument("--lines", type=_positive(1_000_000, 1), default=20, metavar="N",
                    help="with PATH:LINE, print N lines from LINE (default 20), e.g. --lines 5")
    _json(sh)
    sh.add_argument("target", metavar="REF|PATH[:LINE]",
                    help="ROOT/PATH@OFFSET+LENGTH as printed by search, or ROOT/PATH with an optional :LINE")


def _tail(sub: argparse._SubParsersAction[Parser]) -> None:
    ta = _add(sub, "tail", "follow an agency's live events (indexed, deleted, snapshots, lockdowns) until Ctrl-C",
              "  koradaemon tail --agency demo\n  koradaemon watch-events --agency demo --json\n",
              aliases=("watch-events",))
    _agency(ta)
    _json(ta)


def _snapshot(sub: argparse._SubParsersAction[Parser]) -> None:
    sn = _add(sub, "snapshot", "take a Session Vault snapshot of an agency's state now",
              "  koradaemon snapshot --agency demo\n")
    _agency(sn)
    _json(sn)


def _snapshots(sub: argparse._SubParsersAction[Parser]) -> None:
    sl = _add(sub, "snapshots", "list an agency's snapshots", "  koradaemon snapshots --agency demo\n")
    _agency(sl)
    _json(sl)


def _restore(sub: argparse._SubParsersAction[Parser]) -> None:
    rs = _add(sub, "restore", "restore a snapshot (the latest by default) in place or into --target",
              "  koradaemon restore --agency demo\n"
              "  koradaemon restore --agency demo --snapshot 2026-01-31T120000Z --target restored/demo\n")
    _agency(rs)
    rs.add_argument("--snapshot", metavar="ID", help="snapshot id as listed by 'snapshots', e.g. "
                    "--snapshot 2026-01-31T120000Z (default: the latest)")
    rs.add_argument("--target", metavar="DIR", help="restore into this folder, relative to the data root, "
                    "e.g. --target restored/demo (default: in place)")
    _json(rs)


def _audit(sub: argparse._SubParsersAction[Parser]) -> None:
    au = _add(sub, "audit", "audit log commands: verify, unlock",
              "  koradaemon audit verify\n  koradaemon audit unlock --agency demo --reason 'restored backup'\n")
    ausub = au.add_subparsers(dest="audit_cmd", required=True, metavar="ACTION")
    av = _add(ausub, "verify", "recompute every hash and link of the audit chain(s); exit 65 on a bad record",
              "  koradaemon audit verify\n  koradaemon audit verify --agency demo --json\n")
    _agency(av, "verify only this agency (default: every agency)")
    _json(av)
    av.add_argument("--from-nats", metavar="URL", help="re-verify the chain(s) from the NATS stream (the fleet "
                    "verifier), e.g. --from-nats nats://127.0.0.1:4222")
    av.add_argument("--against-nats", metavar="URL", help="check the local log against the last signed "
                    "checkpoint on the NATS stream, e.g. --against-nats nats://127.0.0.1:4222")
    av.add_argument("--host", help="the exporting host's id on the stream (default: nats.host_id or this "
                    "host), e.g. --host web1")
    creds = av.add_mutually_exclusive_group()
    creds.add_argument("--token-file", type=_path, help="a file holding the NATS token, if the server wants one, "
                       "e.g. --token-file secrets/nats.token")
    creds.add_argument("--nkey-file", type=_path, help="a file holding an nkey user seed (SU...), if the server "
                       "wants one, e.g. --nkey-file secrets/verifier.nk")
    creds.add_argument("--creds-file", type=_path, help="a NATS .creds file (user JWT and seed), if the server "
                       "wants one, e.g. --creds-file secrets/verifier.creds")
    av.add_argument("--checkpoint-key", metavar="HEX", help="the Ed25519 public key checkpoints must be signed "
                    "with (default: the first checkpoint's), e.g. --checkpoint-key 3b6a27bc...")
    ul = _add(ausub, "unlock", "end an agency's lockdown (audited): the bad part of its log is quarantined",
              "  koradaemon audit unlock --agency demo --reason 'checked: disk restored from backup'\n")
    _agency(ul)
    ul.add_argument("--reason", required=True, metavar="TEXT",
                    help="why the lockdown may end (recorded in the log), e.g. --reason 'restored from backup'")
    _json(ul)


def _init(sub: argparse._SubParsersAction[Parser]) -> None:
    ini = _add(sub, "init", "first run: write a commented config, a random vault passphrase (0600) and the data "
               "root (0700), then print the next command",
               "  koradaemon init --data-root ~/kora          # everything in one folder\n"
               "  koradaemon init --user                      # ~/.config/koradaemon + ~/.local/state/koradaemon\n"
               "  sudo koradaemon init --system               # /etc/koradaemon + /var/lib/koradaemon\n")
    scope = ini.add_mutually_exclusive_group()
    scope.add_argument("--user", action="store_true",
                       help="config in ~/.config/koradaemon/, data root ~/.local/state/koradaemon (systemd --user)")
    scope.add_argument("--system", action="store_true",
                       help="config in /etc/koradaemon/, data root /var/lib/koradaemon, passphrase as a systemd "
                            "credential in /etc/credstore/")
    ini.add_argument("--agency", metavar="ID", default="demo",
                     help="id of the first agency, e.g. --agency acme (default demo)")
    ini.add_argument("--force", action="store_true", help="overwrite an existing config file")


def _print_unit(sub: argparse._SubParsersAction[Parser]) -> None:
    pu = _add(sub, "print-unit", "print a service definition for this installation (this koradaemon's path)",
              "  koradaemon print-unit systemd > /etc/systemd/system/koradaemon.service\n"
              "  koradaemon print-unit systemd-user > ~/.config/systemd/user/koradaemon.service\n"
              "  koradaemon print-unit launchd > ~/Library/LaunchAgents/dev.kora.koradaemon.plist\n")
    pu.add_argument("kind", choices=("systemd", "systemd-user", "launchd"), help="which service manager")


def _mcp(sub: argparse._SubParsersAction[Parser]) -> None:
    m = _add(sub, "mcp", "serve one agency's memory to an agent over MCP (stdio): search, read, status",
             "  koradaemon mcp --agency demo                  # an operator's shell: socket and token from the config\n"
             "  KORA_SOCKET=... KORA_TOKEN=... koradaemon mcp --agency demo   # as the supervised agent runs it\n")
    m.add_argument("--agency", help="agency (default: $KORA_AGENCY), e.g. --agency demo")
    m.add_argument("--socket", type=_path,
                   help="control socket (default: $KORA_SOCKET, else from the config), "
                   "e.g. --socket run/koradaemon.sock")
    m.add_argument("--token-file", type=_path,
                   help="file holding the agency's token (default: $KORA_TOKEN_FILE), e.g. --token-file ~/.kora/token")


def _secret(sub: argparse._SubParsersAction[Parser]) -> None:
    sp = _add(sub, "secret", "the secrets vault: KV-1 encrypted values per agency (from stdin or a file, never argv)",
              "  koradaemon secret list --agency demo\n"
              "  printf %s \"$KEY\" | koradaemon secret set --agency demo openai-key\n")
    ssub = sp.add_subparsers(dest="secret_cmd", required=True, metavar="ACTION")
    st = _add(ssub, "set", "store a secret read from stdin (or --file)",
              "  koradaemon secret set --agency demo openai-key < key.txt\n")
    st.add_argument("--file", type=_path, help="read the value from this file instead of stdin, e.g. --file key.txt")
    gt = _add(ssub, "get", "print a secret's value on stdout", "  koradaemon secret get --agency demo openai-key\n")
    rm = _add(ssub, "rm", "delete a secret", "  koradaemon secret rm --agency demo openai-key\n")
    ls = _add(ssub, "list", "list an agency's secret names", "  koradaemon secret list --agency demo\n")
    for p in (st, gt, rm, ls):
        p.add_argument("--agency", required=True, help="the agency the secret belongs to, e.g. --agency demo")
    for p in (st, gt, rm):
        p.add_argument("name", help="the secret's name, e.g. openai-key")


def _logs(sub: argparse._SubParsersAction[Parser]) -> None:
    lp = _add(sub, "logs", "print the daemon's log lines (JSON), rotated files included",
              "  koradaemon logs -n 50\n  koradaemon logs --follow --agency demo\n")
    lp.add_argument("--agency", help="only lines about this agency, e.g. --agency demo")
    lp.add_argument("--follow", "-f", action="store_true", help="keep printing new lines (Ctrl-C stops), e.g. -f")
    lp.add_argument("--lines", "-n", type=int, default=0, help="only the last N lines (0: all), e.g. -n 100")


def _path(text: str) -> object:
    from pathlib import Path

    return Path(text)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    args = sys.argv[1:] if argv is None else argv
    Parser.json_errors = "--json" in args
    return build_parser(only=_command(args)).parse_args(args)


def _command(argv: list[str]) -> str | None:
    """The command word of ``argv`` (skipping the global options and their values); None for none."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word in ("-c", "--config", "--data-root"):
            skip = True
        elif word in ("-h", "--help", "--version"):
            return None
        elif not word.startswith("-"):
            return word
    return None
