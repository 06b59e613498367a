"""CLI operations when no daemon runs: straight on the data root, with the same checks."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..audit.lockdown import LockdownRegistry
from ..audit.manager import AuditManager
from ..config_model import Config
from ..daemon.runlock import RunLock
from ..errors import LockdownError
from ..index.db import open_db
from ..index.store import AgencyStore
from ..vault.service import SnapshotService


def _check_unlocked(cfg: Config, agency: str) -> None:
    reg = LockdownRegistry(cfg.path(cfg.index.database))
    try:
        if reg.is_locked(agency):
            raise LockdownError(f"agency {agency!r} is in lockdown",
                                hint=f"'koradaemon audit unlock --agency {agency} --reason ...'")
    finally:
        reg.close()


def status(cfg: Config, agency: str) -> dict[str, Any]:
    conn = open_db(cfg.path(cfg.index.database))
    try:
        stats = {a.agency_id: AgencyStore(conn, a.agency_id).stats() for a in cfg.agencies if a.agency_id == agency}
    finally:
        conn.close()
    reg = LockdownRegistry(cfg.path(cfg.index.database))
    try:
        locked = reg.locked()
    finally:
        reg.close()
    out: dict[str, dict[str, Any]] = {}
    for a, st in stats.items():
        out[a] = {**st, "locked": a in locked, "lockdown": locked.get(a)}
    return {"running": False, "agencies": out, "lockdowns": sorted(locked)}


def search(cfg: Config, agency: str, query: str, limit: int, mode: str = "") -> dict[str, Any]:
    _check_unlocked(cfg, agency)
    if mode in ("vector", "hybrid"):  # h-vectors (issue 15): the model lives in the running daemon
        from ..vectors import VectorsUnavailable

        raise VectorsUnavailable(f"--mode {mode} needs the running daemon", hint="start it, or use --mode keyword")
    conn = open_db(cfg.path(cfg.index.database))
    try:
        return {"hits": [h.to_dict() for h in AgencyStore(conn, agency).search(query, limit)]}
    finally:
        conn.close()


def _manager(cfg: Config) -> AuditManager:
    return AuditManager(audit_root=cfg.path(cfg.audit.dir), db_path=cfg.path(cfg.index.database),
                        agency_ids=[a.agency_id for a in cfg.agencies],
                        segment_max_bytes=cfg.audit.segment_max_bytes)


def audit_verify(cfg: Config, agency: str) -> dict[str, Any]:
    mgr = _manager(cfg)
    try:
        return dataclasses.asdict(mgr.verify(agency)[agency])
    finally:
        mgr.close()


def audit_verify_all(cfg: Config) -> dict[str, Any]:
    mgr = _manager(cfg)
    try:
        return {a: dataclasses.asdict(r) for a, r in mgr.verify().items()}
    finally:
        mgr.close()


def audit_unlock(cfg: Config, agency: str, reason: str) -> dict[str, Any]:
    with RunLock(cfg.data_root):
        return _audit_unlock(cfg, agency, reason)


def _audit_unlock(cfg: Config, agency: str, reason: str) -> dict[str, Any]:
    mgr = _manager(cfg)
    try:
        record = mgr.unlock(agency, reason)
        return {"unlocked": agency, "seq": record.seq}
    finally:
        mgr.close()


def _with_snapshots(cfg: Config, fn: Any) -> Any:
    with RunLock(cfg.data_root):
        return _snapshots_locked(cfg, fn)


def _snapshots_locked(cfg: Config, fn: Any) -> Any:
    mgr = _manager(cfg)
    mgr.open_all()
    try:
        svc = SnapshotService(cfg, audit=mgr.append, events=None)
        return fn(svc)
    finally:
        mgr.close()


def snapshot(cfg: Config, agency: str, trigger: str) -> dict[str, Any]:
    _check_unlocked(cfg, agency)
    return {"snapshot": _with_snapshots(cfg, lambda s: s.create_now(agency, trigger))}


def snapshots(cfg: Config, agency: str) -> dict[str, Any]:
    _check_unlocked(cfg, agency)
    return {"snapshots": _with_snapshots(cfg, lambda s: s.list(agency))}


def restore(cfg: Config, agency: str, snapshot: str, target: str) -> dict[str, Any]:
    _check_unlocked(cfg, agency)
    return dict(_with_snapshots(cfg, lambda s: s.restore(agency, snapshot or None, target or None)))
