"""Indexer worker threads: take file changes off the work queue, prepare jobs, feed the writer."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import apsw
import structlog

from .db import open_db
from .handoff import Handoff, Item
from .jobs import DeleteJob, IndexJob, Job, MoveJob, ReadJob
from .prepare import EAGER_LIMIT, ChunkParams, prepare_index, skip_job
from .prepclient import child_rss
from .store import AgencyStore
from .writer import Writer

log = structlog.get_logger(__name__)

DEEP_WORK = 8  # changes waiting behind this one: treat it as bulk work
# Files up to this size are read, hashed and chunked by the writer thread itself (ReadJob); larger
# ones here, in parallel with the writer's inserts, and handed over as prepared jobs.
INLINE_BYTES = 16 << 10


class ChangeQueue(Protocol):
    def get(self, timeout: float | None = ...) -> Any: ...
    def task_done(self) -> None: ...


class RootLookup(Protocol):
    """(agency_id, root) -> the root's folder, or None when it is not (or no longer) attached."""

    def get(self, key: tuple[str, str], /) -> Path | None: ...


class Indexer:
    """N worker threads between the watch queue and the writer.

    ``root_paths`` maps (agency_id, root) to the root's folder on disk;
    ``on_rescan(agency_id, root)`` runs a reconcile crawl for a RESCAN change;
    ``is_locked(agency_id)`` drops work for agencies in lockdown.
    """

    def __init__(
        self,
        *,
        db_path: Path,
        work: ChangeQueue,
        writer: Writer,
        root_paths: RootLookup,
        params: ChunkParams,
        workers: int = 2,
        on_rescan: Callable[[str, str], None] | None = None,
        is_locked: Callable[[str], bool] = lambda agency_id: False,
        prep_process: bool = True,
    ) -> None:
        self.db_path = db_path
        self.work = work
        self.writer = writer
        self.root_paths = root_paths
        self.params = params
        self.on_rescan = on_rescan
        self.is_locked = is_locked
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"kora-indexer-{i}", daemon=True) for i in range(workers)
        ]
        self.counters: Counter[str] = Counter()
        # With one worker, read jobs wait while more work is queued and go to the writer together,
        # and bulk files are prepared in the prep worker process (handoff.py; order kept: every
        # other job goes after them). With more workers each job is handed over before its change
        # is marked done, which keeps changes to one path in order.
        self._batching = workers == 1
        self._handoff = Handoff(writer, self.counters, self._stop, self._depth, prep=self._batching and prep_process)

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t.is_alive():
                t.join(max(0.0, deadline - time.monotonic()))
        if self._handoff.prep is not None:  # the thread closed it; if it is still stuck, end the process
            self._handoff.prep.kill()
            if not any(t.is_alive() for t in self._threads):
                self._handoff.close(max(0.1, deadline - time.monotonic()))

    def prep_worker_mb(self) -> float:
        """Resident MB of the prep worker process (0 when none runs)."""
        prep = self._handoff.prep
        return round(child_rss(prep.pid) / 1e6, 1) if prep is not None else 0.0

    def alive(self) -> bool:
        """Every worker thread started is still running (a dead one: the daemon must not go on as ready)."""
        return all(t.is_alive() for t in self._threads if t.ident is not None) and any(
            t.ident is not None for t in self._threads)

    def _run(self) -> None:
        try:
            conn = open_db(self.db_path, migrate=False)
        except Exception as exc:  # the thread ends; alive() says so
            log.error("indexer_cannot_start", error=str(exc))
            return
        self._handoff.warm()
        try:
            while not self._stop.is_set():
                try:
                    change = self.work.get(timeout=0.2)
                except Exception:
                    self.counters["errors"] += 1
                    log.exception("indexer_queue_failed")
                    time.sleep(0.1)
                    continue
                if change is None:
                    self._handoff.idle()
                    continue
                try:
                    self.handle(conn, change)
                except Exception as exc:  # one bad change never stops a worker: skip it with its reason
                    self.counters["errors"] += 1
                    log.exception("indexer_change_failed", change=repr(change))
                    self._skip(change, f"error:{type(exc).__name__}")
                finally:
                    self._hand_over(force=False)
                    self.work.task_done()
        finally:
            self._hand_over(force=True)
            self._handoff.close(1.0)
            conn.close()

    def _submit(self, job: Job) -> None:
        """Every job goes to the writer through here, after the read jobs held back."""
        if self._batching and isinstance(job, ReadJob):
            self._handoff.hold(job)
            return
        self._hand_over(force=True)
        self.writer.submit(job)

    def _hand_over(self, *, force: bool) -> None:
        """Submit held jobs when enough are held or ready, or nothing more is queued (handoff.py)."""
        self._handoff.hand_over(force=force)

    def _depth(self) -> int:
        depth = getattr(self.work, "depth", None)
        return int(depth()) if callable(depth) else 0

    def _skip(self, change: Any, reason: str) -> None:
        """Record a file whose change failed here as skipped (its audit record says why)."""
        try:
            if change.kind.name != "INDEX":
                return
            root_path = self.root_paths.get((change.agency_id, change.root))
            if root_path is None:
                return
            job = skip_job(change.agency_id, change.root, change.path, os.path.join(root_path, change.path),
                           bool(getattr(change, "bulk", False)), reason)
            if job is not None:
                self._submit(job)
        except Exception:
            log.exception("indexer_skip_failed", change=repr(change))

    def handle(self, conn: apsw.Connection, change: Any) -> None:
        kind = change.kind.name
        agency_id, root = change.agency_id, change.root
        if self.is_locked(agency_id):
            self.counters["dropped_locked"] += 1
            return
        if kind == "RESCAN":
            if self.on_rescan is not None:
                self.on_rescan(agency_id, root)
            return
        # A deep work queue (a burst: a folder moved in, a branch switch) is indexed like a crawl:
        # the writer batches it. A single live change still commits alone, at once.
        bulk = bool(getattr(change, "bulk", False)) or self._depth() >= DEEP_WORK
        self.counters[kind.lower()] += 1
        if kind == "INDEX":
            self._index(conn, agency_id, root, change.path, bulk, change)
        elif kind in ("DELETE", "DELETE_TREE"):
            tree = kind == "DELETE_TREE" or bool(getattr(change, "is_directory", False))
            if not tree and self._recreated(agency_id, root, change.path):
                # Deleted and already created again (a branch switch: git unlinks each file it
                # updates, then creates it): the new file's own create/close (or move) change
                # follows and replaces the document in one step. Deleting it first would cost a
                # second write and a second audit record, and indexing it here could read it
                # half written.
                self.counters["delete_recreated"] += 1
                return
            self._submit(DeleteJob(agency_id, root, change.path, tree=tree, bulk=bulk))
        elif kind in ("MOVE", "MOVE_TREE"):
            tree = kind == "MOVE_TREE" or bool(getattr(change, "is_directory", False))
            if not tree and AgencyStore(conn, agency_id).document(root, change.path) is None:
                self._index(conn, agency_id, root, change.dest_path, bulk, change)  # source was never indexed
                return
            self._submit(MoveJob(agency_id, root, change.path, change.dest_path, tree=tree, bulk=bulk))
        else:
            log.warning("indexer_unknown_change", kind=kind)

    def _recreated(self, agency_id: str, root: str, path: str) -> bool:
        """A regular file is at ``path`` again (no symlink followed)."""
        root_path = self.root_paths.get((agency_id, root))
        if root_path is None:
            return False
        try:
            return stat.S_ISREG(os.lstat(os.path.join(root_path, path)).st_mode)
        except (OSError, ValueError):
            return False

    def _index(self, conn: apsw.Connection, agency_id: str, root: str, path: str, bulk: bool,
               change: Any = None) -> None:
        root_path = self.root_paths.get((agency_id, root))
        if root_path is None:
            log.warning("indexer_unknown_root", agency_id=agency_id, root=root)
            return
        unindexed = bool(getattr(change, "unindexed", False))
        queued = float(getattr(change, "queued", 0.0)) or time.monotonic()
        crawl = bool(getattr(change, "bulk", False))
        top = str(root_path)
        # A crawl's change carries the size it just saw: no second stat here. Whatever the file is by
        # the time it is read (bigger, gone, a link), prepare_index sees and says.
        size = int(getattr(change, "size", 0) or 0) if crawl else 0
        if not size:
            try:
                st = os.stat(os.path.join(top, path), follow_symlinks=False)
                size = st.st_size if stat.S_ISREG(st.st_mode) else -1
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                size = -1  # prepare_index below says what to do (delete, skip)
        if bulk and 0 < size <= EAGER_LIMIT and self._handoff.prep is not None and self._handoff.prep.usable:
            known = None if unindexed else AgencyStore(conn, agency_id).document(root, path)
            if self._handoff.offload(Item(agency_id, root, path, top, known, self.params, bulk, queued, crawl), size):
                return
        if 0 <= size <= INLINE_BYTES:
            # A small file is read by the writer itself, inside its transaction (see ReadJob).
            self._submit(ReadJob(agency_id, root, path, top, self.params, bulk, unindexed, queued, crawl))
            return
        # A file the crawl found unindexed needs no lookup (as for a ReadJob): the writer inserts it.
        known = None if unindexed else AgencyStore(conn, agency_id).document(root, path)
        job = prepare_index(agency_id, root, path, os.path.join(top, path), known, self.params, bulk, root_path=top)
        if job is not None:
            if isinstance(job, IndexJob):  # latency: from queueing, crawl and live apart
                job.started, job.crawl = queued, crawl
            self._submit(job)
        else:
            self.counters["unchanged"] += 1
