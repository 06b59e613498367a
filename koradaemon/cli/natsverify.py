"""`koradaemon audit verify --from-nats URL` / `--against-nats URL` (docs/nats.md)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..config_model import Config
from ..errors import TamperError, UsageError
from .render import print_json

if TYPE_CHECKING:
    from ..streams.natsauth import NatsAuth


def wanted(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "from_nats", None) or getattr(args, "against_nats", None))


def _auth(args: argparse.Namespace) -> NatsAuth | None:
    from ..streams.natsauth import NatsAuth
    from ..streams.natskeys import NkeyError

    for kind, path in (("token", args.token_file), ("nkey", args.nkey_file), ("creds", args.creds_file)):
        if path is None:
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        try:
            return NatsAuth.from_secret(kind, text)
        except NkeyError as exc:
            raise UsageError(f"{path}: {exc}") from None
    return None


def cmd_nats_verify(cfg: Config, args: argparse.Namespace) -> int:
    from ..streams.natsnames import host_id
    from ..streams.natsverify import against_checkpoint, fetch, last_checkpoint, verify_chain

    if args.from_nats and args.against_nats:
        raise UsageError("use --from-nats or --against-nats, not both")
    agencies = [args.agency] if args.agency else [a.agency_id for a in cfg.agencies]
    for a in agencies:
        if cfg.agency(a) is None:
            raise UsageError(f"unknown agency {a!r}", hint="see 'agencies' in the configuration")
    host = host_id(args.host or cfg.nats.host_id)
    auth = _auth(args)
    results: dict[str, Any] = {}
    failed = False
    for agency in agencies:
        if args.from_nats:
            report = verify_chain(agency, fetch(args.from_nats, host, agency, "audit", auth))
            results[agency] = report.to_dict()
            failed = failed or not report.ok
            if not args.json:
                line = (f"ok, {report.count} records on the stream, head seq {report.head_seq}" if report.ok
                        else f"FAILED at seq {report.first_bad_seq}: {report.reason}")
                print(f"agency {agency}: {line}")
        else:
            try:
                out = against_checkpoint(cfg.path(cfg.audit.dir) / agency, agency,
                                         last_checkpoint(args.against_nats, host, agency, auth,
                                                                 args.checkpoint_key))
            except TamperError as exc:
                results[agency] = {"agency_id": agency, "ok": False, "reason": str(exc)}
                failed = True
                if not args.json:
                    print(f"agency {agency}: FAILED: {exc}")
                continue
            results[agency] = out
            if not args.json:
                print(f"agency {agency}: ok, local head seq {out['local_head_seq']} holds the checkpoint at seq "
                      f"{out['checkpoint_seq']} ({out['checkpoint_ts']})")
    if args.json:
        print_json(results)
    return 65 if failed else 0
