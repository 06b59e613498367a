"""Command line: `koradaemon run|check-config|status|search|files|show|tail|snapshot|restore|audit|init ...`.

Commands that read or change a running daemon's data go through its control socket; with no
daemon running they work on the data root directly (read-only commands never write there).
Imports are lazy: a `search` or `status` call loads only what it uses.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import KoraError

TYPE_CHECKING = False  # typing is not imported at run time: this module is on every CLI call
if TYPE_CHECKING:
    from ..config_model import Config

EX_SOFTWARE = 70


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    json_errors = "--json" in args_list
    try:
        from .parser import parse

        args = parse(args_list)
        code = dispatch(args)
        try:
            sys.stdout.flush()  # here, not at exit, so a closed pipe is handled like any other
        except BrokenPipeError:
            quiet_stdout()
        return code
    except KoraError as exc:
        return _fail(exc.exit_code, exc.code, str(exc), json_errors, exc.hint)
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


def _fail(code: int, kind: str, message: str, as_json: bool, hint: str | None = None) -> int:
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        quiet_stdout()
    if as_json:
        import json

        body = {"error": kind, "message": message, "exit_code": code, **({"hint": hint} if hint else {})}
        line = json.dumps(body, ensure_ascii=False)
    else:
        line = f"koradaemon: error: {message}" + (f" ({hint})" if hint and hint not in message else "")
    print(" ".join(line.splitlines()), file=sys.stderr)
    return code


def quiet_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush stays silent."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):
        pass


def dispatch(args: argparse.Namespace) -> int:
    if args.cmd in ("init", "print-unit"):
        from . import firstrun

        return firstrun.cmd_init(args) if args.cmd == "init" else firstrun.cmd_print_unit(args)
    from . import locate

    config_path = locate.find_config(args.config)
    root, origin = locate.data_root(config_path, args.data_root)
    if args.cmd == "check-config":
        return cmd_check_config(load_config_full(config_path, root))
    locate.check_data_root(root, origin)
    if args.cmd == "run":
        from pathlib import Path

        from ..daemon.runner import run_daemon

        return run_daemon(load_config_full(config_path, root), Path(config_path))
    from .remote import run_client

    return run_client(args, config_path, root)


def load_config_full(config_path: str, root: str) -> Config:
    from pathlib import Path

    from ..config import load_config

    return load_config(Path(config_path), data_root=Path(root))


def cmd_check_config(cfg: Config) -> int:
    print(f"configuration OK: {cfg.source}")
    print(f"data root: {cfg.data_root}")
    for a in cfg.agencies:
        print(f"agency {a.agency_id}: roots={list(a.roots)} ignore={list(a.ignore)} state_dirs={list(a.state_dirs)}")
    print(f"agent: {'enabled' if cfg.agent.enabled else 'disabled'}")
    return 0
