"""Command line: `koradaemon run|check-config|status|search|files|show|tail|snapshot|restore|audit|init ...`.

Commands that read or change a running daemon's data go through its control socket; with no
daemon running they work on the data root directly (read-only commands never write there).
Imports are lazy: a `search` or `status` call loads only what it uses.
"""

from __future__ import annotations

import os
import sys

from ..errors import KoraError
from .render import quiet_stdout

TYPE_CHECKING = False  # typing is not imported at run time: this module is on every CLI call
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from ..config_model import Config

EX_SOFTWARE = 70


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    json_errors = "--json" in args_list
    try:
        from .fastargs import parse_fast

        args = parse_fast(args_list)  # search/status in their plain forms; anything else: argparse
        if args is None:
            from .parser import parse

            args = parse(args_list)
        code = dispatch(args)
        try:
            sys.stdout.flush()  # here, not at exit, so a closed pipe is handled like any other
        except BrokenPipeError:
            quiet_stdout()
        return code
    except KoraError as exc:  # a configuration's problems come one per line; every other error is one line
        return _fail(exc.exit_code, exc.code, str(exc), json_errors, exc.hint,
                     multiline=len(getattr(exc, "errors", ())) > 1 or bool(getattr(exc, "warnings", ())))
    except BrokenPipeError:  # `koradaemon search ... | head -1`: the reader has all it wants
        quiet_stdout()
        return 0
    except KeyboardInterrupt:
        return 130
    except PermissionError as exc:
        return _fail(77, "permission", f"permission denied: {exc.filename or exc}", json_errors,
                     "run as the account that owns the data root (the daemon's user)")
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        return _fail(74, "io", f"{exc.strerror or exc}{where}", json_errors)
    except SystemExit as exc:  # argparse: --help/--version (0) and usage errors (64, already printed)
        return exc.code if isinstance(exc.code, int) else 64
    except Exception as exc:
        if os.environ.get("KORA_DEBUG"):
            raise
        return _fail(EX_SOFTWARE, "internal", f"internal error: {type(exc).__name__}: {exc}", json_errors,
                     "set KORA_DEBUG=1 for the traceback")


def _fail(code: int, kind: str, message: str, as_json: bool, hint: str | None = None, *,
          multiline: bool = False) -> int:
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        quiet_stdout()
    if as_json:
        from .jsonlite import dumps

        body = {"error": kind, "message": message, "exit_code": code, **({"hint": hint} if hint else {})}
        line = dumps(body)
    else:
        line = f"koradaemon: error: {message}" + (f" ({hint})" if hint and hint not in message else "")
    print(line if multiline and not as_json else " ".join(line.splitlines()), file=sys.stderr)
    return code


def dispatch(args: argparse.Namespace) -> int:
    flags = None
    if args.cmd == "run":  # signal handlers first: a SIGHUP/SIGUSR1 during start-up must not kill us
        from ..daemon.signals import SignalFlags

        flags = SignalFlags()
        flags.install()
    if args.cmd == "mcp":  # stdout is the protocol; the agent may have no config file, only its token
        return _mcp(args)
    if args.cmd in ("init", "print-unit"):
        from . import firstrun

        return firstrun.cmd_init(args) if args.cmd == "init" else firstrun.cmd_print_unit(args)
    from . import locate

    config_path = locate.find_config(args.config)
    root, origin = locate.data_root(config_path, args.data_root)
    if args.cmd == "check-config":
        return cmd_check_config(locate.load_config_full(config_path, root))
    locate.check_data_root(root, origin)
    if args.cmd == "run":
        from pathlib import Path

        from ..daemon.runner import run_daemon

        return run_daemon(locate.load_config_full(config_path, root), Path(config_path), flags)
    nats_verify = args.cmd == "audit" and args.audit_cmd == "verify" and (
        getattr(args, "from_nats", None) or getattr(args, "against_nats", None))
    if args.cmd in ("logs", "secret") or nats_verify:
        return _streams_command(args, locate.load_config_full(config_path, root, runtime_checks=False))
    from .remote import run_client

    return run_client(args, config_path, root)


def cmd_check_config(cfg: Config) -> int:
    """Print the checked configuration and its warnings. ``load_config`` ran every check already:
    with errors it raised one ConfigError listing them all (exit 78) and this is not reached."""
    for warning in cfg.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"configuration OK: {cfg.source}" + (f" ({len(cfg.warnings)} warning(s))" if cfg.warnings else ""))
    print(f"data root: {cfg.data_root}")
    for a in cfg.agencies:
        print(f"agency {a.agency_id}: roots={list(a.roots)} ignore={list(a.ignore)} state_dirs={list(a.state_dirs)}")
    print(f"agent: {'enabled' if cfg.agent.enabled else 'disabled'}")
    return 0


def _mcp(args: argparse.Namespace) -> int:
    from ..logsetup import configure_logging
    from ..mcp.command import run as run_mcp
    from . import locate

    def load(a: argparse.Namespace) -> Config:
        config_path = locate.find_config(a.config)
        root, origin = locate.data_root(config_path, a.data_root)
        locate.check_data_root(root, origin)
        return locate.load_config_full(config_path, root, runtime_checks=False)

    configure_logging(level="warning", fmt="console", stream=sys.stderr)
    return run_mcp(args, load)


def _streams_command(args: argparse.Namespace, cfg: Config) -> int:
    """`logs`, `secret`, `audit verify --from-nats/--against-nats`: they work on the data root (secret
    also through the daemon when one runs)."""
    from ..logsetup import configure_logging

    configure_logging(level="warning", fmt="console", stream=sys.stderr)  # stdout is the command's output
    if args.cmd == "logs":
        from .logs import cmd_logs

        return cmd_logs(cfg, args)
    if args.cmd == "secret":
        from .secret import cmd_secret

        return cmd_secret(cfg, args)
    from .natsverify import cmd_nats_verify

    return cmd_nats_verify(cfg, args)
