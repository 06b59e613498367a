"""What the writer thread does in quiet moments: WAL checkpoints and merging FTS segments.

The writer tells :class:`QuietWork` what it committed (:meth:`~QuietWork.committed`,
:meth:`~QuietWork.bulk_committed`) and calls :meth:`~QuietWork.run` when its queue has been empty
for a while; each step gives way as soon as work arrives (``work_waits``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import apsw
import structlog

from .db import fine_busy_handler, give_back_free_pages, immediate
from .fts import merge_step
from .store import optimize_fts

log = structlog.get_logger(__name__)

CHECKPOINT_BUSY_MS = 50
# After bulk work, quiet moments merge the segments it left in short steps, so FTS5's own merging
# (automerge) does not land a big merge of crawl segments inside a live change's commit (issue 12:
# 250-400 pages, 20-100 ms, in ~2 % of live commits). The merging done is bounded by what the
# bulk work wrote (TIDY_PER_PAGE pages per page of text or file), so a small burst onto a big index
# never rewrites all of it.
TIDY_PAGES = -64  # one step; negative: levels holding fewer than 'usermerge' segments are merged too
TIDY_PER_PAGE = 2


class QuietWork:
    def __init__(self, counters: Counter[str], optimize_idle_s: float, busy_timeout_ms: int,
                 work_waits: Callable[[], bool]) -> None:
        self.counters = counters
        self.optimize_idle_s = optimize_idle_s
        self.busy_timeout_ms = busy_timeout_ms
        self.work_waits = work_waits
        self._dirty_since_optimize = False
        self._optimize_not_before = 0.0
        self._bulk_dirty = False
        self._untidy = False
        self._tidy_budget = 0  # pages of merging the bulk work since the last tidy-up earned

    def committed(self) -> None:
        """A transaction changed the index."""
        self._dirty_since_optimize = self._bulk_dirty = True

    def bulk_committed(self, pages: int) -> None:
        """A bulk transaction wrote about ``pages`` pages: it earns that much merging, and a checkpoint."""
        self._bulk_dirty = self._untidy = True
        self._tidy_budget += TIDY_PER_PAGE * pages

    def run(self, conn: apsw.Connection, idle_s: float) -> None:
        """Quiet moments: truncate the WAL after bulk work, merge FTS segments after a longer rest."""
        try:
            if self._untidy:
                self._tidy(conn)
            if self._bulk_dirty:
                self._bulk_dirty = False
                self.checkpoint(conn)
            if idle_s >= self.optimize_idle_s:
                self._idle_optimize(conn)
        except Exception:
            self.counters["idle_errors"] += 1
            log.exception("writer_idle_work_failed")

    def checkpoint(self, conn: apsw.Connection) -> None:
        """Copy the WAL into the database and truncate it (readers in the way: it stays for next time)."""
        fine_busy_handler(conn, CHECKPOINT_BUSY_MS)  # a long search must not hold the writer up
        try:
            give_back_free_pages(conn)
            row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except apsw.Error as exc:
            log.warning("wal_checkpoint_failed", error=str(exc))
            return
        finally:
            fine_busy_handler(conn, self.busy_timeout_ms)
        self.counters["checkpoints"] += 1
        if row is not None and row[0]:
            self._bulk_dirty = True  # a reader held it back: try again at the next quiet moment

    def _tidy(self, conn: apsw.Connection) -> None:
        """Merge what bulk work left, one short step (transaction) at a time, while nothing waits."""
        while not self.work_waits():
            with immediate(conn):
                more = merge_step(conn, TIDY_PAGES)
            self.counters["tidy_steps"] += 1
            self._tidy_budget -= -TIDY_PAGES
            if not more or self._tidy_budget <= 0:
                self._untidy, self._tidy_budget = False, 0
                return

    def _idle_optimize(self, conn: apsw.Connection) -> None:
        """Merge the FTS segments written since the last merge (a failure is tried again one
        ``optimize_idle_s`` later, not at every idle tick)."""
        t0 = time.monotonic()
        if not self._dirty_since_optimize or t0 < self._optimize_not_before:
            return
        self._optimize_not_before = t0 + self.optimize_idle_s
        with immediate(conn):
            optimize_fts(conn)
        self._dirty_since_optimize = False
        self.counters["optimizations"] += 1
        self.checkpoint(conn)
        log.info("fts_optimized", seconds=round(time.monotonic() - t0, 3))
