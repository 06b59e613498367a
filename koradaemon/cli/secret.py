"""`koradaemon secret set|get|list|rm --agency A NAME`: the secrets vault from the command line.

A value comes from stdin or ``--file`` (never from argv, which other users can read in
``/proc``). Through the daemon's socket when one runs, else straight on the data root under the
run lock; audited either way (the name, never the value).
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path
from typing import Any

from ..config_model import Config
from ..control.client import ControlClient
from ..errors import LockdownError, NotRunningError, UsageError
from ..service.tokens import TokenStore
from ..vault.secrets import MAX_SECRET_BYTES, check_name


def add_parser(sub: Any) -> None:
    sp = sub.add_parser("secret", help="the secrets vault (values from stdin or a file, never argv)")
    ssub = sp.add_subparsers(dest="secret_cmd", required=True)
    s = ssub.add_parser("set", help="store a secret read from stdin (or --file)")
    s.add_argument("--file", type=Path, help="read the value from this file instead of stdin")
    g = ssub.add_parser("get", help="print a secret's value on stdout")
    r = ssub.add_parser("rm", help="delete a secret")
    ls = ssub.add_parser("list", help="list an agency's secret names")
    for p in (s, g, r, ls):
        p.add_argument("--agency", required=True)
    for p in (s, g, r):
        p.add_argument("name")


def _read_value(args: argparse.Namespace) -> bytes:
    if args.file is not None:
        try:
            with open(args.file, "rb") as fh:
                raw = fh.read(MAX_SECRET_BYTES + 1)
        except OSError as exc:
            raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    else:
        if sys.stdin.isatty():
            print("value (end with Ctrl-D):", file=sys.stderr)
        raw = sys.stdin.buffer.read(MAX_SECRET_BYTES + 1)
    if raw.endswith(b"\r\n"):
        raw = raw[:-2]
    elif raw.endswith(b"\n"):
        raw = raw[:-1]
    if len(raw) > MAX_SECRET_BYTES:
        raise UsageError(f"a secret holds at most {MAX_SECRET_BYTES // 1024} KiB")
    return raw


def cmd_secret(cfg: Config, args: argparse.Namespace) -> int:
    agency = args.agency
    if cfg.agency(agency) is None:
        raise UsageError(f"unknown agency {agency!r}", hint="see 'agencies' in the configuration")
    op = args.secret_cmd
    extra: dict[str, Any] = {}
    if op != "list":
        extra["name"] = check_name(args.name)
    if op == "set":
        extra["value_b64"] = base64.b64encode(_read_value(args)).decode()
    try:
        result = _via_socket(cfg, agency, f"secret.{op}", extra)
    except NotRunningError:
        result = _offline(cfg, agency, op, extra)
    if op == "get":
        sys.stdout.buffer.write(base64.b64decode(result["value_b64"]))
        sys.stdout.buffer.flush()
    elif op == "list":
        for name in result["names"]:
            print(name)
    elif op == "set":
        print(f"secret {result['name']!r} stored ({result['bytes']} bytes)", file=sys.stderr)
    else:
        print(f"secret {result['name']!r} removed", file=sys.stderr)
    return 0


def _via_socket(cfg: Config, agency: str, op: str, extra: dict[str, Any]) -> dict[str, Any]:
    tokens = TokenStore(cfg.tokens_path())
    if not tokens.path(agency).exists():
        raise NotRunningError("no token yet: the daemon has never run on this data root")
    with ControlClient(cfg.socket_path(), timeout=120) as client:
        return client.call(op, agency, tokens.read(agency), **extra)


def _offline(cfg: Config, agency: str, op: str, extra: dict[str, Any]) -> dict[str, Any]:
    from ..audit.manager import AuditManager
    from ..daemon.runlock import RunLock
    from ..daemon.secret_ops import offline_store

    with RunLock(cfg.data_root):
        mgr = AuditManager(audit_root=cfg.path(cfg.audit.dir), db_path=cfg.path(cfg.index.database),
                           agency_ids=[agency], segment_max_bytes=cfg.audit.segment_max_bytes)
        try:
            mgr.open_all()
            if mgr.lockdown.is_locked(agency):
                raise LockdownError(f"agency {agency!r} is in lockdown",
                                    hint=f"'koradaemon audit unlock --agency {agency} --reason ...'")
            store = offline_store(cfg)
            if op == "list":
                return {"names": store.list(agency)}
            name = extra["name"]
            if op == "set":
                size = store.set(agency, name, base64.b64decode(extra["value_b64"]))
                mgr.append(agency, "secret_set", {"name": name})
                return {"name": name, "bytes": size}
            if op == "get":
                value = store.get(agency, name)
                try:
                    mgr.append(agency, "secret_read", {"name": name})
                    return {"name": name, "value_b64": base64.b64encode(bytes(value)).decode()}
                finally:
                    value[:] = bytes(len(value))
            store.remove(agency, name)
            mgr.append(agency, "secret_rm", {"name": name})
            return {"name": name, "removed": True}
        finally:
            mgr.close()
