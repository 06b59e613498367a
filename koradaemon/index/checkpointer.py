"""WAL checkpoints off the writer thread.

SQLite's automatic checkpoint runs inside the COMMIT that crosses ``wal_autocheckpoint`` pages, on
the committing thread: it copies the WAL into the database and syncs both files, 10-30 ms during
which the next live change waits for the writer. Here the writer's connection has its WAL hook
set to :meth:`Checkpointer.note` instead (which replaces the automatic checkpoint), and a thread of
its own, with its own connection, runs the PASSIVE checkpoint: in WAL mode a checkpoint does not
take the write lock, so the writer goes on committing meanwhile. The writer's TRUNCATE checkpoint
at quiet moments (writer.py) stays as it is.
"""

from __future__ import annotations

import threading
from pathlib import Path

import apsw
import structlog

from .db import open_db

log = structlog.get_logger(__name__)

WAL_PAGES = 1000  # as SQLite's default wal_autocheckpoint
CHECKPOINT_BUSY_MS = 50


class Checkpointer:
    def __init__(self, db_path: Path, wal_pages: int = WAL_PAGES) -> None:
        self.db_path = db_path
        self.wal_pages = wal_pages
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="kora-checkpoint", daemon=True)
        self.checkpoints = 0
        self.errors = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def asked(self) -> bool:
        """A checkpoint was asked for and has not started yet."""
        return self._wake.is_set()

    def hook(self, conn: apsw.Connection) -> None:
        """Take over ``conn``'s automatic checkpoints (while this thread runs; else SQLite's own)."""
        if self._thread.is_alive():
            conn.set_wal_hook(self.note)

    def note(self, conn: apsw.Connection, dbname: str, pages: int) -> int:
        """The WAL hook: called after each commit with the pages in the WAL; never blocks."""
        if pages >= self.wal_pages:
            if self._thread.is_alive():
                self._wake.set()
            else:  # this thread is gone: checkpoint here, as SQLite's own hook would
                try:
                    conn.wal_checkpoint(dbname)
                except apsw.Error as exc:
                    log.warning("wal_checkpoint_failed", error=str(exc))
        return apsw.SQLITE_OK

    def _run(self) -> None:
        try:
            conn = open_db(self.db_path, migrate=False)
        except Exception as exc:  # the writer's idle TRUNCATE checkpoints still bound the WAL
            log.error("checkpointer_cannot_start", error=str(exc))
            return
        conn.set_busy_timeout(CHECKPOINT_BUSY_MS)
        try:
            while not self._stopping:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    break
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except apsw.Error as exc:  # busy, full disk: the next commit past the mark asks again
                    self.errors += 1
                    log.warning("wal_checkpoint_failed", error=str(exc))
        finally:
            conn.close()
