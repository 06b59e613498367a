"""A CLI command for an agency: through the daemon's control socket, or on the data root when none runs.

Reaching the daemon needs only the socket, the token file and the agency ids (read by
:mod:`.quickconf` without yaml); the full config is loaded only for the offline fallback.
A daemon that holds the data root is never mistaken for "not running": an unreadable token is
exit 77, a socket that does not answer is exit 75.
"""

from __future__ import annotations

import errno
import os

from ..errors import AuthError, KoraError, NotRunningError, UsageError
from .quickconf import ClientConf

TYPE_CHECKING = False  # typing is not imported at run time: this module is on every CLI call
if TYPE_CHECKING:
    import argparse
    from typing import Any

# (command, audit action) -> socket operation
OPS = {
    ("status", None): "status", ("search", None): "search", ("files", None): "files", ("show", None): "show",
    ("tail", None): "subscribe", ("watch-events", None): "subscribe", ("snapshot", None): "snapshot",
    ("snapshots", None): "snapshots", ("restore", None): "restore",
    ("audit", "verify"): "audit.verify", ("audit", "unlock"): "audit.unlock",
}
UNKNOWN = "unknown"
ALL_AGENCIES_OPS = ("status", "audit.verify")  # without --agency: every agency whose token is readable


class DataRootBusy(KoraError):
    exit_code = 75
    code = "data_root_busy"  # as daemon/runlock.py's; "busy" is the control socket's "no free slot"


def run_client(args: argparse.Namespace, config_path: str, root: str) -> int:
    from . import quickconf

    conf = quickconf.read(config_path, root) or _full_client_conf(config_path, root)
    op = OPS[(args.cmd, getattr(args, "audit_cmd", None))]
    agency = _agency(args, conf, op)
    if op == "subscribe":
        from .follow import follow

        return follow(conf, agency, _token_or_raise(conf, agency), as_json=args.json)
    try:
        out = via_socket(conf, args, op, agency)
    except NotRunningError:
        holder = lock_holder(root)
        if holder is not None:
            raise DataRootBusy(f"{_who(holder)} holds the data root {root}, but its control socket "
                               f"{conf.socket_path()} does not answer",
                               hint="it may be starting; or set KORA_RUNTIME_DIR to its runtime folder") from None
        out = _offline(args, op, agency, config_path, root)
    from .render import render

    return render(args, out)


def _full_client_conf(config_path: str, root: str) -> ClientConf:
    from .locate import load_config_full

    cfg = load_config_full(config_path, root, runtime_checks=False)
    return ClientConf(config_path, root, cfg.control.socket, cfg.control.tokens_dir,
                      [a.agency_id for a in cfg.agencies])


def _agency(args: argparse.Namespace, conf: ClientConf, op: str) -> str | None:
    agency: str | None = getattr(args, "agency", None)
    if agency is not None:
        if agency not in conf.agencies:
            raise UsageError(f"unknown agency {agency!r}", hint=f"the config declares {', '.join(conf.agencies)}")
        return agency
    if op in ALL_AGENCIES_OPS or len(conf.agencies) == 1:
        return None if op in ALL_AGENCIES_OPS else conf.agencies[0]
    raise UsageError(f"name the agency with --agency (the config declares {', '.join(conf.agencies)})")


def op_args(args: argparse.Namespace, op: str) -> dict[str, Any]:
    if op == "search":
        out: dict[str, Any] = {"query": args.query, "limit": args.limit}
        if args.offset:
            out["offset"] = args.offset
        if args.fts:
            out["fts"] = True
        if getattr(args, "mode", None):  # keyword | vector | hybrid (issue 15)
            out["mode"] = args.mode
        return out
    if op == "files":
        return {"skipped": args.skipped, "limit": args.limit, "offset": args.offset}
    if op == "restore":
        return {"snapshot": args.snapshot or "", "target": args.target or ""}
    if op == "audit.unlock":
        return {"reason": args.reason}
    if op == "snapshot":
        return {"trigger": "manual"}
    return {}


# -- tokens and the run lock --------------------------------------------------------------------
def read_token(conf: ClientConf, agency: str) -> str | None:
    """The agency's token; None when the file does not exist; PermissionError when it is unreadable."""
    path = os.path.join(conf.tokens_path(), f"{agency}.token")
    try:
        with open(path, "rb") as f:  # binary: a text file would load the ascii codec
            return f.read(4096).decode("ascii").strip() or None
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None


def _token_or_raise(conf: ClientConf, agency: str | None) -> str:
    assert agency is not None
    try:
        token = read_token(conf, agency)
    except PermissionError:
        raise _unreadable(conf, agency) from None
    if token:
        return token
    holder = lock_holder(conf.data_root)
    if holder is None:
        raise NotRunningError(f"koradaemon is not running on the data root {conf.data_root}",
                              hint="start it with 'koradaemon run'")
    raise AuthError(f"{_who(holder)} holds the data root, but there is no token file "
                    f"{os.path.join(conf.tokens_path(), agency + '.token')}",
                    hint="set KORA_RUNTIME_DIR to the daemon's runtime folder, or wait until it has started")


def _unreadable(conf: ClientConf, agency: str) -> KoraError:
    path = os.path.join(conf.tokens_path(), f"{agency}.token")
    holder = lock_holder(conf.data_root)
    state = "the token exists" if holder is None else (
        "the data root belongs to another user" if holder == UNKNOWN else f"{_who(holder)} holds the data root")
    return AuthError(f"{state}, but the token file {path} is not readable by uid {os.getuid()}",
                     hint="run as the daemon's user, e.g. 'sudo -u koradaemon koradaemon ...'")


def lock_holder(data_root: str) -> str | None:
    """Who holds ``run/koradaemon.lock`` ("<pid> <what>"), or None when nobody does. Creates nothing."""
    import fcntl

    path = os.path.join(data_root, "run", "koradaemon.lock")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return UNKNOWN if exc.errno in (errno.EACCES, errno.EPERM) else None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _who(holder: str) -> str:
    if holder == UNKNOWN:
        return "another user (whose run lock this user cannot read)"
    pid, _, what = holder.partition(" ")
    return f"a koradaemon command (pid {pid})" if what == "cli" else f"the daemon (pid {pid})"


# -- through the socket -------------------------------------------------------------------------
def via_socket(conf: ClientConf, args: argparse.Namespace, op: str, agency: str | None) -> dict[str, Any]:
    from .wire import Wire

    extra = op_args(args, op)
    if agency is None:
        return _all_agencies(conf, op, extra)
    token = _token_or_raise(conf, agency)
    with Wire(conf.socket_path()) as client:
        if op == "restore" and extra["snapshot"]:
            _check_snapshot_id(client.call("snapshots", agency, token)["snapshots"], extra["snapshot"], agency)
        if op == "show":
            from .show import show_online

            return {"op": op, "agency": agency, "online": True, "result": show_online(client, agency, token, args)}
        result = client.call(op, agency, token, **extra)
        if op == "search" and extra.get("offset") and "total" not in result and "offset" not in result:
            result = _page_locally(client, agency, token, extra)  # a daemon without paging: page here
        return {"op": op, "agency": agency, "result": result, "online": True}


def _page_locally(client: Any, agency: str, token: str, extra: dict[str, Any]) -> dict[str, Any]:
    offset, limit = extra["offset"], extra["limit"]
    wanted = {k: v for k, v in extra.items() if k != "offset"}
    wanted["limit"] = min(offset + limit, 1000)
    result = dict(client.call("search", agency, token, **wanted))
    result["hits"] = list(result.get("hits", []))[offset:offset + limit]
    return result


def _all_agencies(conf: ClientConf, op: str, extra: dict[str, Any]) -> dict[str, Any]:
    from .wire import Wire

    tokens: dict[str, str] = {}
    unreadable = []
    for a in conf.agencies:
        try:
            tok = read_token(conf, a)
        except PermissionError:
            unreadable.append(a)
            continue
        if tok:
            tokens[a] = tok
    if not tokens:
        if unreadable:
            raise _unreadable(conf, unreadable[0])
        _token_or_raise(conf, conf.agencies[0])  # raises: not running, or a daemon without our tokens
        raise NotRunningError("no token file is readable")
    results = {}
    with Wire(conf.socket_path()) as client:
        for a, tok in tokens.items():
            results[a] = client.call(op, a, tok, **extra)
    if op == "status":  # the operator's view: every agency whose token is readable
        return {"op": op, "agency": None, "result": _merge_status(results), "online": True}
    return {"op": op, "agency": None, "result": results, "online": True}


def _merge_status(per_agency: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for st in per_agency.values():
        if not merged:
            merged = {**st, "agencies": {}, "lockdowns": []}
        merged["agencies"].update(st.get("agencies", {}))
        merged["lockdowns"] = sorted(set(merged["lockdowns"]) | set(st.get("lockdowns", [])))
        merged["incomplete"] = any(bool(a.get("incomplete")) for a in merged["agencies"].values())
        queues = [a.get("queue") or {} for a in merged["agencies"].values()]
        merged["queue"] = {**(merged.get("queue") or {}), "depth": sum(q.get("depth", 0) for q in queues),
                           "in_flight": sum(q.get("in_flight", 0) for q in queues)}
        if st.get("agent", {}).get("state") not in ("disabled", None):
            merged["agent"] = st["agent"]
    return merged


def _check_snapshot_id(snapshots: list[dict[str, Any]], wanted: str, agency: str) -> None:
    ids = [str(s.get("id")) for s in snapshots]
    if wanted not in ids:
        listing = ", ".join(ids[-10:]) if ids else "none"
        raise UsageError(f"agency {agency!r} has no snapshot {wanted!r}; existing: {listing}",
                         hint=f"'koradaemon snapshots --agency {agency}' lists them")


# -- offline ------------------------------------------------------------------------------------
def _offline(args: argparse.Namespace, op: str, agency: str | None, config_path: str, root: str) -> dict[str, Any]:
    import sys

    from ..logsetup import configure_logging
    from . import offline as off
    from .locate import load_config_full

    configure_logging(level="error", fmt="console", stream=sys.stderr)
    cfg = load_config_full(config_path, root, runtime_checks=False)
    extra = op_args(args, op)
    if agency is None:  # status / audit verify of every agency
        fn = off.status_all if op == "status" else off.audit_verify_all
        return {"op": op, "agency": None, "result": fn(cfg), "online": False}
    if op == "restore" and extra["snapshot"]:
        _check_snapshot_id(off.snapshots(cfg, agency)["snapshots"], extra["snapshot"], agency)
    if op == "show":
        return {"op": op, "agency": agency, "result": off.show(cfg, agency, args), "online": False}
    fn2: Any = {"status": off.status, "search": off.search, "files": off.files, "snapshot": off.snapshot,
                "snapshots": off.snapshots, "restore": off.restore, "audit.verify": off.audit_verify,
                "audit.unlock": off.audit_unlock}[op]
    return {"op": op, "agency": agency, "result": fn2(cfg, agency, **extra), "online": False}
