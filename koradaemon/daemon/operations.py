"""The named operations of the control socket. Never SQL: each op is a fixed, agency-scoped action."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import apsw
import structlog

from ..config_model import Config
from ..confine import ensure_dirs, resolve_client_path
from ..control.connection import Handler, lower_thread_priority
from ..control.protocol import Request
from ..control.server import local_operator
from ..errors import UsageError
from ..events import ALL_CATEGORIES, DEFAULT_CATEGORIES, EventBus
from ..fsutil import atomic_write_bytes as atomic_write
from ..index import search as searching
from ..index.db import open_db
from ..index.disksize import index_files
from ..index.lines import line_range
from ..index.query import parse
from ..index.retrieval import ChunkRef, FileTexts, StaleChunk, read_chunk_text
from ..index.store import AgencyStore
from ..vault.secrets import SecretStore
from .runtime import AgencyRuntime
from .secret_ops import SecretOps
from .status import StatusSources, full_status

log = structlog.get_logger(__name__)

MAX_LIMIT = 1000
# Operations whose cost grows with the agency's data: the control server runs a bounded number
# of them per agency at once (control.heavy_per_agency).
HEAVY_OPS = frozenset({"search", "get_chunk", "snapshot", "snapshots", "restore", "audit.verify", "files"})
# Heavy operations that start at nice +10; a keyword search (a few milliseconds) lowers its own
# thread's priority only once it has run for search.SLOW_S.
NICE_OPS = HEAVY_OPS - {"search"}
READ_POOL = 4  # idle read connections kept (each with its page cache, 2 MB at most)
MAX_OFFSET = 10_000
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


class OpsContext(StatusSources, Protocol):
    """What the operations need of the running daemon (it satisfies this; no import of the daemon)."""

    cfg: Config
    data_root: Path
    events: EventBus
    secrets: SecretStore | None

    def audit_append(self, agency_id: str, record_type: str, data: dict[str, Any]) -> None: ...


class Operations:
    def __init__(self, ctx: OpsContext) -> None:
        self.d = ctx
        self._idle: list[apsw.Connection] = []  # read connections, reused by every client thread
        self._idle_lock = threading.Lock()
        self._closed = False

    def handlers(self) -> dict[str, Handler]:
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
            "files": self.files,
            "ping": lambda req: {"pong": True},
            **SecretOps(self.d, lambda req: self._runtime(req).check_unlocked()).handlers(),
        }

    def _runtime(self, req: Request) -> AgencyRuntime:
        return self.d.agencies.require(req.agency_id)

    @contextmanager
    def _reading(self) -> Iterator[apsw.Connection]:
        """A read connection from the pool (opened when none is idle), returned afterwards: a
        one-shot client does not pay for opening the database and starts with a warm cache."""
        with self._idle_lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = open_db(self.d.db_path, migrate=False)
        try:
            yield conn
        finally:
            # Only a connection with no read transaction left open goes back: an idle one that
            # held a snapshot would keep the WAL from being checkpointed and answer from old data.
            idle = conn.txn_state() == apsw.SQLITE_TXN_NONE
            with self._idle_lock:
                keep = idle and not self._closed and len(self._idle) < READ_POOL
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close(True)  # with any statement left open

    def close(self) -> None:
        """Close the idle read connections (at stop, before the writer's connection: the last
        connection to close checkpoints the WAL); one still in use is closed when returned."""
        with self._idle_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close(True)

    def on_refusal(self, agency_id: str | None, reason: str, op: str | None) -> None:
        log.warning("control_refused", agency_id=agency_id, reason=reason, op=op)
        if agency_id and self.d.agencies.allowed(agency_id):
            try:
                self.d.audit_append(agency_id, "refused", {"reason": reason[:200], "op": (op or "")[:64]})
            except Exception as exc:  # a refusal must never take the server down
                log.error("refusal_audit_failed", error=str(exc))

    # -- ops -------------------------------------------------------------------------
    def status(self, req: Request) -> dict[str, Any]:
        # The shared database files are sized only for a caller who can read them anyway.
        cfg = self.d.cfg
        files = index_files(self.d.db_path, cfg.path(cfg.vectors.database) if cfg.vectors.enabled else None)
        operator = local_operator(req.peer)
        return full_status(self.d, req.agency_id, files if operator else None, operator=operator)

    def search(self, req: Request) -> dict[str, Any]:
        self._runtime(req).check_unlocked()
        query = _arg(req.args, "query", str)
        limit = _arg(req.args, "limit", int, 10)
        offset = _arg(req.args, "offset", int, 0)
        raw = _arg(req.args, "fts", bool, False)
        if not 1 <= limit <= MAX_LIMIT:
            raise UsageError(f"limit must be between 1 and {MAX_LIMIT}")
        mode = _arg(req.args, "mode", str, "")  # keyword | vector | hybrid (issue 15)
        if mode not in ("", "keyword", "vector", "hybrid"):
            raise UsageError("mode must be keyword, vector or hybrid")
        incomplete = self.d.pipeline.sync.incomplete(req.agency_id)  # a sync still running: may miss files
        texts = FileTexts(self.d.data_root, self._runtime(req).agency.roots)
        if mode in ("vector", "hybrid") or (not mode and self.d.vectors is not None):
            from ..vectors.search import run_search

            lower_thread_priority()  # embedding the query is always heavy work
            with self._reading() as conn:
                found = dict(run_search(self.d.vectors, AgencyStore(conn, req.agency_id, texts), query, limit,
                                             mode))
            return {**found, "incomplete": incomplete}
        if not 0 <= offset <= MAX_OFFSET:
            raise UsageError(f"offset must be between 0 and {MAX_OFFSET}")
        parsed = parse(query, raw=raw)
        with self._reading() as conn:
            page = searching.run(conn, req.agency_id, parsed, limit, offset,
                                 self.d.cfg.index.search_time_limit_ms / 1000, on_slow=lower_thread_priority,
                                 texts=texts)
        out: dict[str, Any] = {**page.to_dict(), "incomplete": incomplete}
        if _arg(req.args, "lines", bool, False):  # exact line ranges for memory references (the MCP server)
            for hit in out["hits"]:
                hit.update(self._lines(req, hit))
        return out

    def _lines(self, req: Request, ref_args: Mapping[str, Any]) -> dict[str, Any]:
        """``line_start``/``line_end`` of a reference, or ``stale: True`` when its file changed."""
        agency = self._runtime(req).agency
        try:
            first, last = line_range(self.d.data_root, agency.roots, ChunkRef.from_args(dict(ref_args)))
        except StaleChunk:
            return {"line_start": None, "line_end": None, "stale": True}
        return {"line_start": first, "line_end": last, "stale": False}

    def get_chunk(self, req: Request) -> dict[str, Any]:
        self._runtime(req).check_unlocked()
        agency = self._runtime(req).agency
        ref = ChunkRef.from_args(dict(req.args))
        text = read_chunk_text(self.d.data_root, agency.roots, ref)
        out = {"root": ref.root, "path": ref.path, "offset": ref.offset, "length": ref.length,
               "sha256": ref.sha256, "text": text}
        if _arg(req.args, "lines", bool, False):
            out.update(self._lines(req, req.args))
        return out

    def snapshot(self, req: Request) -> dict[str, Any]:
        self._runtime(req).check_unlocked()
        info = self.d.vault.create_now(req.agency_id, _arg(req.args, "trigger", str, "manual"))
        return {"snapshot": info}

    def list_snapshots(self, req: Request) -> dict[str, Any]:
        self._runtime(req).check_unlocked()
        return {"snapshots": self.d.vault.list(req.agency_id)}

    def restore(self, req: Request) -> dict[str, Any]:
        runtime = self._runtime(req)
        runtime.check_unlocked()
        snap = _arg(req.args, "snapshot", str, "")
        target = _arg(req.args, "target", str, "")
        return self.d.vault.restore(req.agency_id, snap or None, target or None, pause=_pause(runtime.agent))

    def put_context(self, req: Request) -> dict[str, Any]:
        """Store a named context blob in the agency's state (snapshotted with it), atomically, audited."""
        self._runtime(req).check_unlocked()
        agency = self._runtime(req).agency
        if not agency.state_dirs:
            raise UsageError(f"agency {req.agency_id!r} has no state_dirs to keep context in")
        name = _arg(req.args, "name", str)
        content = _arg(req.args, "content", str)
        if not _CONTEXT_NAME.fullmatch(name):
            raise UsageError("context name: 1-64 of [A-Za-z0-9._-], not starting with '.'")
        data = content.encode("utf-8")
        # The context folder is resolved like a client path: a symlinked `context/` (or state dir)
        # leading out of the data root, into a watched root or a daemon folder is refused.
        folder = resolve_client_path(self.d.cfg, f"{agency.state_dirs[0]}/context", what="context folder")
        ensure_dirs(self.d.cfg, folder)
        atomic_write(folder / name, data)
        digest = hashlib.sha256(data).hexdigest()
        self.d.audit_append(req.agency_id, "context_put", {"name": name, "bytes": len(data), "sha256": digest})
        return {"name": name, "bytes": len(data), "sha256": digest}

    def audit_verify(self, req: Request) -> dict[str, Any]:
        result = self.d.audit.verify(req.agency_id)[req.agency_id]
        return dataclasses.asdict(result)

    def audit_unlock(self, req: Request) -> dict[str, Any]:
        reason = _arg(req.args, "reason", str)
        if not reason.strip():
            raise UsageError("an unlock needs a reason")
        record = self._runtime(req).unlock(reason)
        report = {k: v for k, v in self.d.audit.last_unlock.get(req.agency_id, {}).items() if k != "reason"}
        return {"unlocked": req.agency_id, "seq": getattr(record, "seq", None), **report,
                "audit_dir": str(self.d.cfg.path(self.d.cfg.audit.dir) / req.agency_id)}

    def files(self, req: Request) -> dict[str, Any]:
        """A page of the agency's indexed (or skipped) files; with ``path`` ("ROOT/PATH"), that one file."""
        from ..index.listing import file_entry, list_files, split_root

        runtime = self._runtime(req)
        runtime.check_unlocked()
        agency = runtime.agency
        if "path" in req.args:
            root, path = split_root(_arg(req.args, "path", str), agency.roots)
            with self._reading() as conn:
                return {"root": root, "path": path, "file": file_entry(conn, req.agency_id, root, path)}
        limit = _arg(req.args, "limit", int, 1000)
        offset = _arg(req.args, "offset", int, 0)
        if not 1 <= limit <= 1_000_000 or offset < 0:
            raise UsageError("limit must be 1..1000000 and offset >= 0")
        with self._reading() as conn:
            return list_files(conn, req.agency_id, skipped=_arg(req.args, "skipped", bool, False),
                              limit=limit, offset=offset)

    def subscribe(self, req: Request) -> Iterator[dict[str, Any] | None]:
        """Live events of the agency; ``None`` on idle lets the server notice a hang-up or a stop."""
        self._runtime(req).check_unlocked()
        audit = _arg(req.args, "audit", bool, False)  # whole audit records too (docs/events.md)
        sub = self.d.events.subscribe(req.agency_id, categories=ALL_CATEGORIES if audit else DEFAULT_CATEGORIES)
        try:
            yield {"type": "subscribed", "agency_id": req.agency_id}
            while not sub.closed:
                yield sub.get(timeout=0.5)
        finally:
            sub.close()



def _pause(agent: object) -> Callable[[], AbstractContextManager[None]] | None:
    """The agent's ``paused()`` (an in-place restore holds the agent stopped), if this agency has one."""
    paused = getattr(agent, "paused", None)
    return paused if callable(paused) else None
