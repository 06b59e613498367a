"""The named operations of the control socket. Never SQL: each op is a fixed, agency-scoped action."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import apsw
import structlog

from ..errors import UsageError
from ..fsutil import atomic_write_bytes as atomic_write
from ..index.db import open_db
from ..index.retrieval import ChunkRef, read_chunk_text
from ..index.store import AgencyStore
from .status import full_status

if TYPE_CHECKING:
    from .assembler import Daemon

log = structlog.get_logger(__name__)

MAX_LIMIT = 100
_CONTEXT_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


def _arg(args: Mapping[str, Any], name: str, typ: type, default: Any = ...) -> Any:
    if name not in args:
        if default is ...:
            raise UsageError(f"missing argument {name!r}")
        return default
    value = args[name]
    if not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool):
        raise UsageError(f"argument {name!r} must be {typ.__name__}")
    return value


class Operations:
    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self._local = threading.local()

    def handlers(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "status": self.status,
            "search": self.search,
            "get_chunk": self.get_chunk,
            "snapshot": self.snapshot,
            "snapshots": self.list_snapshots,
            "restore": self.restore,
            "vault.put_context": self.put_context,
            "audit.verify": self.audit_verify,
            "audit.unlock": self.audit_unlock,
            "subscribe": self.subscribe,
            "ping": lambda req: {"pong": True},
        }

    def _conn(self) -> apsw.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_db(self.d.db_path, migrate=False)
            self._local.conn = conn
        return conn

    def on_refusal(self, agency_id: str | None, reason: str, op: str | None) -> None:
        log.warning("control_refused", agency_id=agency_id, reason=reason, op=op)
        if agency_id and self.d.cfg.agency(agency_id) and not self.d.lockdown.is_locked(agency_id):
            try:
                self.d.audit_append(agency_id, "refused", {"reason": reason[:200], "op": (op or "")[:64]})
            except Exception as exc:  # a refusal must never take the server down
                log.error("refusal_audit_failed", error=str(exc))

    # -- ops -------------------------------------------------------------------------
    def status(self, req: Any) -> dict[str, Any]:
        return full_status(self.d, req.agency_id)

    def search(self, req: Any) -> dict[str, Any]:
        self.d.check_unlocked(req.agency_id)
        query = _arg(req.args, "query", str)
        limit = _arg(req.args, "limit", int, 10)
        if not 1 <= limit <= MAX_LIMIT:
            raise UsageError(f"limit must be between 1 and {MAX_LIMIT}")
        mode = _arg(req.args, "mode", str, "")  # h-vectors (issue 15): keyword | vector | hybrid
        if mode or self.d.vectors is not None:
            from ..vectors.search import run_search

            return run_search(self.d.vectors, AgencyStore(self._conn(), req.agency_id), query, limit, mode)
        hits = AgencyStore(self._conn(), req.agency_id).search(query, limit)
        return {"hits": [h.to_dict() for h in hits]}

    def get_chunk(self, req: Any) -> dict[str, Any]:
        self.d.check_unlocked(req.agency_id)
        agency = self.d.cfg.agency(req.agency_id)
        assert agency is not None
        ref = ChunkRef.from_args(dict(req.args))
        text = read_chunk_text(self.d.cfg.data_root, agency.roots, ref)
        return {"root": ref.root, "path": ref.path, "offset": ref.offset, "length": ref.length,
                "sha256": ref.sha256, "text": text}

    def snapshot(self, req: Any) -> dict[str, Any]:
        self.d.check_unlocked(req.agency_id)
        info = self.d.snapshots.create_now(req.agency_id, _arg(req.args, "trigger", str, "manual"))
        return {"snapshot": info}

    def list_snapshots(self, req: Any) -> dict[str, Any]:
        self.d.check_unlocked(req.agency_id)
        return {"snapshots": self.d.snapshots.list(req.agency_id)}

    def restore(self, req: Any) -> dict[str, Any]:
        self.d.check_unlocked(req.agency_id)
        snap = _arg(req.args, "snapshot", str, "")
        target = _arg(req.args, "target", str, "")
        return self.d.snapshots.restore(req.agency_id, snap or None, target or None, supervisor=self.d.supervisor)

    def put_context(self, req: Any) -> dict[str, Any]:
        """Store a named context blob in the agency's state (snapshotted with it), atomically, audited."""
        self.d.check_unlocked(req.agency_id)
        agency = self.d.cfg.agency(req.agency_id)
        assert agency is not None
        if not agency.state_dirs:
            raise UsageError(f"agency {req.agency_id!r} has no state_dirs to keep context in")
        name = _arg(req.args, "name", str)
        content = _arg(req.args, "content", str)
        if not _CONTEXT_NAME.fullmatch(name):
            raise UsageError("context name: 1-64 of [A-Za-z0-9._-], not starting with '.'")
        data = content.encode("utf-8")
        target = self.d.cfg.path(agency.state_dirs[0]) / "context" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
        digest = hashlib.sha256(data).hexdigest()
        self.d.audit_append(req.agency_id, "context_put", {"name": name, "bytes": len(data), "sha256": digest})
        return {"name": name, "bytes": len(data), "sha256": digest}

    def audit_verify(self, req: Any) -> dict[str, Any]:
        result = self.d.audit.verify(req.agency_id)[req.agency_id]
        return dataclasses.asdict(result)

    def audit_unlock(self, req: Any) -> dict[str, Any]:
        reason = _arg(req.args, "reason", str)
        if not reason.strip():
            raise UsageError("an unlock needs a reason")
        self.d.audit.unlock(req.agency_id, reason)
        return {"unlocked": req.agency_id}

    def subscribe(self, req: Any) -> Iterator[dict[str, Any] | None]:
        """Live events of the agency; ``None`` on idle lets the server notice a hang-up or a stop."""
        self.d.check_unlocked(req.agency_id)
        sub = self.d.events.subscribe(req.agency_id)
        try:
            yield {"type": "subscribed", "agency_id": req.agency_id}
            while not sub.closed:
                yield sub.get(timeout=0.5)
        finally:
            sub.close()

