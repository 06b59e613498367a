"""CLI operations when no daemon runs: straight on the data root, with the same checks.

Read-only commands (status, search, files, show, snapshots, audit verify) open the database
read-only and create nothing: a fully checkpointed database (no ``-wal`` file) is opened as
immutable, so not even ``-wal``/``-shm`` files appear. Commands that write take the run lock.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable
from typing import Any

import apsw

from ..audit.anchor import Anchor
from ..audit.verify import verify_log
from ..config_model import Config
from ..confine import resolve_client_path
from ..daemon.runlock import RunLock
from ..errors import DatabaseError, KoraError, LockdownError

T = Callable[..., Any]


class NoIndex(KoraError):
    """The data root has no database yet: no daemon has ever run there."""

    exit_code = 69
    code = "not_running"


def open_readonly(cfg: Config) -> apsw.Connection:
    path = str(cfg.path(cfg.index.database))
    if not os.path.isfile(path):
        raise NoIndex(f"there is no index at {path}: koradaemon has never run on the data root {cfg.data_root}",
                      hint="check --data-root / the config, or start the daemon with 'koradaemon run'")
    if not os.access(path, os.R_OK):
        raise PermissionError(13, "permission denied", path)
    immutable = "&immutable=1" if not os.path.exists(path + "-wal") else ""
    uri = "file:" + _quote(path) + "?mode=ro" + immutable
    try:
        conn = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
        conn.set_busy_timeout(10_000)
        from ..index.schema import SCHEMA_VERSION

        version = int(conn.pragma("user_version"))
    except apsw.Error as exc:
        raise DatabaseError(f"cannot read the index {path}: {exc}") from None
    if version != SCHEMA_VERSION:
        conn.close()
        raise DatabaseError(f"{path}: schema version {version}, this koradaemon reads {SCHEMA_VERSION}",
                            hint="start the daemon once so it migrates the database")
    return conn


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")


def _with_db(cfg: Config, fn: Callable[[apsw.Connection], Any]) -> Any:
    conn = open_readonly(cfg)
    try:
        return fn(conn)
    finally:
        conn.close()


def _locked(conn: apsw.Connection) -> dict[str, dict[str, Any]]:
    rows = conn.execute("SELECT agency_id, reason, seq, since FROM lockdown").fetchall()
    return {str(a): {"reason": str(r), "seq": s, "since": str(t)} for a, r, s, t in rows}


def _check_unlocked(conn: apsw.Connection, agency: str) -> None:
    if agency in _locked(conn):
        raise LockdownError(f"agency {agency!r} is in lockdown",
                            hint=f"'koradaemon audit unlock --agency {agency} --reason ...'")


# -- read-only ---------------------------------------------------------------------------------
def status(cfg: Config, agency: str) -> dict[str, Any]:
    return _status(cfg, [agency])


def status_all(cfg: Config) -> dict[str, Any]:
    return _status(cfg, [a.agency_id for a in cfg.agencies])


def _status(cfg: Config, agencies: list[str]) -> dict[str, Any]:
    from ..index.disksize import index_files, index_size
    from ..index.store import AgencyStore

    def read(conn: apsw.Connection) -> dict[str, Any]:
        locked = _locked(conn)
        out = {a: {**AgencyStore(conn, a).stats(), "locked": a in locked, "lockdown": locked.get(a)}
               for a in agencies}
        files = index_files(cfg.path(cfg.index.database),
                            cfg.path(cfg.vectors.database) if cfg.vectors.enabled else None)
        return {"running": False, "agencies": out, "lockdowns": sorted(a for a in locked if a in agencies),
                "index_size": index_size(files)}

    return dict(_with_db(cfg, read))


def search(cfg: Config, agency: str, query: str, limit: int, offset: int = 0, fts: bool = False,
           mode: str = "") -> dict[str, Any]:
    if mode in ("vector", "hybrid"):  # the model lives in the running daemon
        from ..vectors import VectorsUnavailable

        raise VectorsUnavailable(f"--mode {mode} needs the running daemon", hint="start it, or use --mode keyword")
    from ..index.retrieval import FileTexts
    from ..index.store import AgencyStore

    a = cfg.agency(agency)
    assert a is not None

    def run(conn: apsw.Connection) -> dict[str, Any]:
        _check_unlocked(conn, agency)
        store = AgencyStore(conn, agency, FileTexts(cfg.data_root, a.roots))
        return dict(store.search_page(query, limit, offset, raw=fts,
                                      time_limit=cfg.index.search_time_limit_ms / 1000).to_dict())

    return dict(_with_db(cfg, run))


def files(cfg: Config, agency: str, skipped: bool, limit: int, offset: int) -> dict[str, Any]:
    from ..index.listing import list_files

    def run(conn: apsw.Connection) -> dict[str, Any]:
        _check_unlocked(conn, agency)
        return list_files(conn, agency, skipped=skipped, limit=limit, offset=offset)

    return dict(_with_db(cfg, run))


def show(cfg: Config, agency: str, args: argparse.Namespace) -> dict[str, Any]:
    from ..index.listing import file_entry
    from ..index.retrieval import ChunkRef, read_chunk_text
    from .show import Target, parse_target, render_result

    a = cfg.agency(agency)
    assert a is not None
    target: Target = parse_target(args.target, a.roots)

    def run(conn: apsw.Connection) -> dict[str, Any]:
        _check_unlocked(conn, agency)
        return file_entry(conn, agency, target.root, target.path)

    entry = _with_db(cfg, run)

    def get_chunk(ref: dict[str, Any]) -> dict[str, Any]:
        return {**ref, "text": read_chunk_text(cfg.data_root, a.roots, ChunkRef.from_args(ref))}

    return render_result(target, entry, get_chunk, args.lines)


def snapshots(cfg: Config, agency: str) -> dict[str, Any]:

    _with_db(cfg, lambda conn: _check_unlocked(conn, agency))
    return {"snapshots": _service(cfg, audit=None).list(agency)}


def audit_verify(cfg: Config, agency: str) -> dict[str, Any]:
    anchor = _with_db(cfg, lambda conn: _anchor(conn, agency))
    return dataclasses.asdict(verify_log(cfg.path(cfg.audit.dir) / agency, agency, anchor=anchor))


def audit_verify_all(cfg: Config) -> dict[str, Any]:
    return {a.agency_id: audit_verify(cfg, a.agency_id) for a in cfg.agencies}


def _anchor(conn: apsw.Connection, agency: str) -> Anchor | None:
    row = conn.execute("SELECT seq, hash, segment, offset FROM audit_anchor WHERE agency_id = ?",
                       (agency,)).fetchone()
    return Anchor(int(row[0]), str(row[1]), int(row[2]), int(row[3])) if row else None


# -- writing: under the run lock ---------------------------------------------------------------
def _manager(cfg: Config) -> Any:
    from ..audit.manager import AuditManager

    return AuditManager(audit_root=cfg.path(cfg.audit.dir), db_path=cfg.path(cfg.index.database),
                        agency_ids=[a.agency_id for a in cfg.agencies],
                        segment_max_bytes=cfg.audit.segment_max_bytes)


def _writable(cfg: Config) -> None:
    open_readonly(cfg).close()  # a data root the daemon never ran on is an error, not a new index


def audit_unlock(cfg: Config, agency: str, reason: str) -> dict[str, Any]:
    from ..errors import UsageError

    if agency not in _with_db(cfg, _locked):  # checked read-only first: a no-op creates nothing
        raise UsageError(f"agency {agency!r} is not in lockdown")
    with RunLock(cfg.data_root):
        mgr = _manager(cfg)
        try:
            record = mgr.unlock(agency, reason)
            data = dict(mgr.last_unlock.get(agency, {}))
        finally:
            mgr.close()
    return unlock_report(cfg, agency, record.seq, data)


def unlock_report(cfg: Config, agency: str, seq: int, data: dict[str, Any]) -> dict[str, Any]:
    out = {"unlocked": agency, "seq": seq, **{k: v for k, v in data.items() if k != "reason"}}
    out["audit_dir"] = str(cfg.path(cfg.audit.dir) / agency)
    return out


def _service(cfg: Config, *, audit: Any, allowed: Callable[[str], bool] = lambda a: True) -> Any:
    """The vault's service on this data root, without a daemon (state dirs and config as configured)."""
    from ..vault.service import SnapshotService

    def state_dirs(agency_id: str) -> tuple[str, ...] | None:
        agency = cfg.agency(agency_id)
        return None if agency is None else tuple(agency.state_dirs)

    return SnapshotService(cfg.vault, cfg.agent, cfg.data_root, audit=audit, events=None, state_dirs=state_dirs,
                           config=lambda: cfg, allowed=allowed)


def _with_snapshots(cfg: Config, fn: Callable[[Any], Any]) -> Any:

    _writable(cfg)
    with RunLock(cfg.data_root):
        mgr = _manager(cfg)
        mgr.open_all()
        try:
            return fn(_service(cfg, audit=mgr.append, allowed=lambda a: not mgr.lockdown.is_locked(a)))
        finally:
            mgr.close()


def snapshot(cfg: Config, agency: str, trigger: str) -> dict[str, Any]:
    _with_db(cfg, lambda conn: _check_unlocked(conn, agency))
    return {"snapshot": _with_snapshots(cfg, lambda s: s.create_now(agency, trigger))}


def restore(cfg: Config, agency: str, snapshot: str, target: str) -> dict[str, Any]:
    if target:  # refused before any lock is taken; the service resolves it again when it restores
        resolve_client_path(cfg, target, what="restore target")
    _with_db(cfg, lambda conn: _check_unlocked(conn, agency))
    return dict(_with_snapshots(cfg, lambda s: s.restore(agency, snapshot or None, target or None)))
