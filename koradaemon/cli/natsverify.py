"""`koradaemon audit verify --from-nats URL` / `--against-nats URL` (docs/nats.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..config_model import Config
from ..errors import TamperError, UsageError
from .render import print_json


def add_arguments(av: argparse.ArgumentParser) -> None:
    av.add_argument("--from-nats", metavar="URL", help="re-verify the chain(s) from the NATS stream (fleet verifier)")
    av.add_argument("--against-nats", metavar="URL",
                    help="check the local log against the last signed checkpoint on the NATS stream")
    av.add_argument("--host", help="the exporting host's id on the stream (default: nats.host_id or this host)")
    av.add_argument("--token-file", type=Path, help="a file holding the NATS token, if the server wants one")
    av.add_argument("--checkpoint-key", metavar="HEX",
                    help="the Ed25519 public key checkpoints must be signed with (default: the first checkpoint's)")


def wanted(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "from_nats", None) or getattr(args, "against_nats", None))


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
    token = None
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            raise UsageError(f"cannot read {args.token_file}: {exc.strerror}") from None
    results: dict[str, Any] = {}
    failed = False
    for agency in agencies:
        if args.from_nats:
            report = verify_chain(agency, fetch(args.from_nats, host, agency, "audit", token))
            results[agency] = report.to_dict()
            failed = failed or not report.ok
            if not args.json:
                line = (f"ok, {report.count} records on the stream, head seq {report.head_seq}" if report.ok
                        else f"FAILED at seq {report.first_bad_seq}: {report.reason}")
                print(f"agency {agency}: {line}")
        else:
            try:
                out = against_checkpoint(cfg.path(cfg.audit.dir) / agency, agency,
                                         last_checkpoint(args.against_nats, host, agency, token,
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
