"""Command line: `koradaemon run|check-config|status|search|snapshot|restore|audit ...`.

Commands that read or change a running daemon's data go through its control
socket; with no daemon running they work on the data root directly.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from ..config import data_root_for, load_config
from ..config_model import Config
from ..errors import KoraError, NotRunningError, UsageError


def default_config_path() -> Path:
    env = os.environ.get("KORA_CONFIG")
    if env:
        return Path(env)
    confdir = os.environ.get("CONFIGURATION_DIRECTORY")
    if confdir:
        return Path(confdir.split(":")[0]) / "koradaemon.yaml"
    return Path("koradaemon.yaml")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="koradaemon", description="KORA OS data engine")
    p.add_argument("--version", action="version", version=f"koradaemon {__version__}")
    p.add_argument("-c", "--config", type=Path, help="YAML config (default: $KORA_CONFIG or ./koradaemon.yaml)")
    p.add_argument("--data-root", help="data root (default: $KORA_DATA_ROOT, $STATE_DIRECTORY, the config's folder)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="run the daemon in the foreground")
    sub.add_parser("check-config", help="validate the configuration and print it")
    st = sub.add_parser("status", help="show the daemon's status")
    st.add_argument("--agency", help="agency (default: the first declared)")
    st.add_argument("--json", action="store_true")
    se = sub.add_parser("search", help="full-text search one agency's index")
    se.add_argument("--agency", required=True)
    se.add_argument("--limit", type=int, default=10)
    se.add_argument("--json", action="store_true")
    se.add_argument("query")
    sn = sub.add_parser("snapshot", help="take a Session Vault snapshot now")
    sn.add_argument("--agency", required=True)
    sn.add_argument("--json", action="store_true")
    sl = sub.add_parser("snapshots", help="list an agency's snapshots")
    sl.add_argument("--agency", required=True)
    sl.add_argument("--json", action="store_true")
    rs = sub.add_parser("restore", help="restore a snapshot (latest by default)")
    rs.add_argument("--agency", required=True)
    rs.add_argument("--snapshot", help="snapshot id (YYYY-MM-DDTHHMMSSZ); default: latest")
    rs.add_argument("--target", help="restore into this folder (relative to the data root) instead of in place")
    rs.add_argument("--json", action="store_true")
    au = sub.add_parser("audit", help="audit log commands")
    ausub = au.add_subparsers(dest="audit_cmd", required=True)
    av = ausub.add_parser("verify", help="verify the audit chain(s) in full")
    av.add_argument("--agency")
    av.add_argument("--json", action="store_true")
    from .natsverify import add_arguments as add_nats_verify_arguments

    add_nats_verify_arguments(av)
    ul = ausub.add_parser("unlock", help="end an agency's lockdown (audited)")
    ul.add_argument("--agency", required=True)
    ul.add_argument("--reason", required=True)
    from .secret import add_parser as add_secret_parser

    add_secret_parser(sub)
    from .logs import add_parser as add_logs_parser

    add_logs_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return dispatch(args)
    except KoraError as exc:
        print(f"koradaemon: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def load(args: argparse.Namespace) -> Config:
    path = args.config or default_config_path()
    root = Path(args.data_root).resolve() if args.data_root else data_root_for(path)
    return load_config(path, data_root=root)


def dispatch(args: argparse.Namespace) -> int:
    flags = None
    if args.cmd == "run":  # signal handlers first: a SIGHUP/SIGUSR1 during start-up must not kill us
        from ..daemon.signals import SignalFlags

        flags = SignalFlags()
        flags.install()
    cfg = load(args)
    if args.cmd != "run":  # CLI output owns stdout; the library's log lines go to stderr
        from ..logsetup import configure_logging

        configure_logging(level="warning", fmt="console", stream=sys.stderr)
    if args.cmd == "check-config":
        return cmd_check_config(cfg)
    if args.cmd == "run":
        from ..daemon.runner import run_daemon

        return run_daemon(cfg, args.config or default_config_path(), flags)
    if args.cmd == "audit" and args.audit_cmd == "verify":
        from .natsverify import cmd_nats_verify, wanted

        if wanted(args):
            return cmd_nats_verify(cfg, args)
    if args.cmd == "logs":
        from .logs import cmd_logs

        return cmd_logs(cfg, args)
    if args.cmd == "secret":
        from .secret import cmd_secret

        return cmd_secret(cfg, args)
    from . import remote as clientops

    agency = getattr(args, "agency", None) or cfg.agencies[0].agency_id
    if cfg.agency(agency) is None:
        raise UsageError(f"unknown agency {agency!r}", hint="see 'agencies' in the configuration")
    try:
        result = clientops.via_socket(cfg, args, agency)
    except NotRunningError:
        result = clientops.offline(cfg, args, agency)
    return clientops.render(args, result)


def cmd_check_config(cfg: Config) -> int:
    print(f"configuration OK: {cfg.source}")
    print(f"data root: {cfg.data_root}")
    for a in cfg.agencies:
        print(f"agency {a.agency_id}: roots={list(a.roots)} ignore={list(a.ignore)} state_dirs={list(a.state_dirs)}")
    print(f"agent: {'enabled' if cfg.agent.enabled else 'disabled'}")
    return 0
