"""What the CLI does for status/search/snapshot/restore/audit: via the socket, or offline."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..config_model import Config
from ..control.client import ControlClient
from ..errors import NotRunningError
from ..service.tokens import TokenStore
from .render import print_json

OPS = {
    ("status", None): "status",
    ("search", None): "search",
    ("snapshot", None): "snapshot",
    ("snapshots", None): "snapshots",
    ("restore", None): "restore",
    ("audit", "verify"): "audit.verify",
    ("audit", "unlock"): "audit.unlock",
}


def _op_and_args(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    op = OPS[(args.cmd, getattr(args, "audit_cmd", None))]
    extra: dict[str, Any] = {}
    if op == "search":
        extra = {"query": args.query, "limit": args.limit}
        if getattr(args, "mode", None):  # h-vectors (issue 15)
            extra["mode"] = args.mode
    elif op == "restore":
        extra = {"snapshot": args.snapshot or "", "target": args.target or ""}
    elif op == "audit.unlock":
        extra = {"reason": args.reason}
    elif op == "snapshot":
        extra = {"trigger": "manual"}
    return op, extra


def via_socket(cfg: Config, args: argparse.Namespace, agency: str) -> dict[str, Any]:
    op, extra = _op_and_args(args)
    token = TokenStore(cfg.tokens_path()).read(agency) if _has_token(cfg, agency) else ""
    if not token:
        raise NotRunningError("no token yet: the daemon has never run on this data root")
    agencies = [agency]
    if op in ("audit.verify", "status") and not getattr(args, "agency", None):
        agencies = [a.agency_id for a in cfg.agencies if _has_token(cfg, a.agency_id)]
    with ControlClient(cfg.socket_path(), timeout=120) as client:
        if len(agencies) == 1:
            return {"op": op, "agency": agency, "result": client.call(op, agency, token, **extra), "online": True}
        results = {}
        for a in agencies:
            tok = TokenStore(cfg.tokens_path()).read(a)
            results[a] = client.call(op, a, tok, **extra)
        if op == "status":  # the operator holds every token: one view over all agencies
            return {"op": op, "agency": None, "result": _merge_status(results), "online": True}
        return {"op": op, "agency": None, "result": results, "online": True}


def _merge_status(per_agency: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for st in per_agency.values():
        if not merged:
            merged = {**st, "agencies": {}, "lockdowns": []}
        merged["agencies"].update(st.get("agencies", {}))
        merged["lockdowns"] = sorted(set(merged["lockdowns"]) | set(st.get("lockdowns", [])))
        if st.get("agent", {}).get("state") not in ("not this agency's", None):
            merged["agent"] = st["agent"]
    return merged


def _has_token(cfg: Config, agency: str) -> bool:
    return TokenStore(cfg.tokens_path()).path(agency).exists()


def offline(cfg: Config, args: argparse.Namespace, agency: str) -> dict[str, Any]:
    from . import offline as off

    op, extra = _op_and_args(args)
    if op == "audit.verify" and not getattr(args, "agency", None):
        return {"op": op, "agency": None, "result": off.audit_verify_all(cfg), "online": False}
    fn: Any = {
        "status": off.status,
        "search": off.search,
        "snapshot": off.snapshot,
        "snapshots": off.snapshots,
        "restore": off.restore,
        "audit.verify": off.audit_verify,
        "audit.unlock": off.audit_unlock,
    }[op]
    return {"op": op, "agency": agency, "result": fn(cfg, agency, **extra), "online": False}


def render(args: argparse.Namespace, out: dict[str, Any]) -> int:
    op, result = out["op"], out["result"]
    failed = op == "audit.verify" and not _verify_ok(result, out["agency"])
    if getattr(args, "json", False):
        print_json(result)
        return 1 if failed else 0
    if op == "search":
        _render_search(result)
    elif op == "audit.verify":
        _render_verify(result, out["agency"])
    elif op == "status":
        from .render_status import render_status

        print(render_status(result, online=out["online"]))
    else:
        print(json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False, default=str))
    return 1 if failed else 0


def _render_search(result: dict[str, Any]) -> None:
    hits = result.get("hits", [])
    if not hits:
        print("no matches")
    for i, h in enumerate(hits, 1):
        print(f"{i:2d}. {h['root']}/{h['path']}  offset={h['offset']} length={h['length']}"
              f"  sha256={h['sha256'][:16]}…  score={h['score']:.4g}")
        print(f"    {' '.join(str(h['snippet']).split())}")


def _verify_ok(result: Any, agency: str | None) -> bool:
    if agency is None:
        return all(_verify_ok(r, "x") for r in result.values())
    return bool(result.get("ok"))


def _render_verify(result: Any, agency: str | None) -> None:
    from ..audit.report import format_verify_result
    from ..audit.verify import VerifyResult

    items = result.values() if agency is None else [result]
    for r in items:
        print(format_verify_result(VerifyResult(**r)))

