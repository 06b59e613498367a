"""Opening kora_kernel.db with the right settings and applying migrations."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import apsw
import structlog

from ..errors import DatabaseError
from . import fts
from .schema import MIGRATIONS, SCHEMA_VERSION

log = structlog.get_logger(__name__)

BUSY_TIMEOUT_MS = 10_000


def open_db(path: Path, *, readonly: bool = False, migrate: bool = True, cache_kib: int = 2000) -> apsw.Connection:
    """Open ``path`` (creating it unless ``readonly``), set pragmas, bring the schema up to date."""
    flags = apsw.SQLITE_OPEN_READONLY if readonly else apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    try:
        conn = apsw.Connection(str(path), flags=flags)
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        if not readonly:
            if int(conn.pragma("page_count")) == 0:  # a new file: only now can auto_vacuum be chosen
                conn.pragma("auto_vacuum", "incremental")
            conn.pragma("journal_mode", "wal")
        conn.pragma("synchronous", "normal")
        conn.pragma("foreign_keys", True)
        conn.pragma("cache_size", -cache_kib)  # readers keep small caches; the writer asks for more
        if migrate and not readonly:
            apply_migrations(conn)
        elif user_version(conn) != SCHEMA_VERSION:
            raise DatabaseError(
                f"{path}: schema version {user_version(conn)}, expected {SCHEMA_VERSION}",
                hint="start the daemon once so it can migrate the database",
            )
    except apsw.Error as exc:
        raise DatabaseError(f"cannot open database {path}: {exc}", hint="check the file and its permissions") from exc
    return conn


def fine_busy_handler(conn: apsw.Connection, timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
    """Wait for a write lock in steps of 0.1 ms first (SQLite's own handler sleeps 1, 2, 5, 10 ms...).

    The writer meets the audit anchor's and the outbox's short transactions; a collision should
    cost a fraction of a millisecond, not the next step of SQLite's back-off.
    """
    def handler(tries: int) -> bool:
        waited = tries * 0.0001 if tries < 100 else 0.01 + (tries - 100) * 0.001
        if waited * 1000 >= timeout_ms:
            return False
        time.sleep(0.0001 if tries < 100 else 0.001)
        return True

    conn.set_busy_handler(handler)


@contextmanager
def immediate(conn: apsw.Connection) -> Iterator[None]:
    """A write transaction that takes the write lock up front (BEGIN IMMEDIATE).

    A deferred transaction that reads first and writes later fails at once with
    SQLITE_BUSY_SNAPSHOT when another connection committed in between (WAL); taking
    the lock first makes it wait (busy_timeout) instead.

    A COMMIT that fails (a full disk, an I/O error) is rolled back here too: SQLite may leave the
    transaction open after such an error, and the connection must be usable for the retry.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if not conn.getautocommit():
            try:
                conn.execute("ROLLBACK")
            except apsw.Error as exc:  # rolled back by SQLite already, or the device is gone
                log.warning("rollback_failed", error=str(exc))
        fts.forget(conn)  # a rolled-back CREATE of an agency's table
        raise


FREE_PAGES_KEPT = 256  # up to 1 MB (and 2 % of the file) of free pages stays for the next inserts


def give_back_free_pages(conn: apsw.Connection) -> int:
    """Shrink the file by its free pages beyond :data:`FREE_PAGES_KEPT` or 2 % of the file, whichever
    is fewer (outside a transaction).

    Bulk work leaves free pages behind (the audit outbox grows while the acknowledger catches
    up, then empties; rewritten documents free their old rows). A database created with
    ``auto_vacuum = incremental`` (every new one) gives them back here; an older database keeps
    them for its next inserts (only a VACUUM would convert it). Returns the pages given back.
    """
    if int(conn.pragma("auto_vacuum")) != 2:
        return 0
    excess = int(conn.pragma("freelist_count")) - min(FREE_PAGES_KEPT, int(conn.pragma("page_count")) // 50)
    if excess <= 0:
        return 0
    conn.execute(f"PRAGMA incremental_vacuum({excess})").fetchall()
    return excess


def user_version(conn: apsw.Connection) -> int:
    return int(conn.pragma("user_version"))


def apply_migrations(conn: apsw.Connection) -> None:
    """Bring the schema up to date, one migration per transaction.

    Each step takes the write lock first (BEGIN IMMEDIATE) and reads ``user_version`` inside the
    transaction, so two processes opening a new database at once never apply the same step twice:
    the second waits for the first and then sees the new version.
    """
    while True:
        with immediate(conn):
            current = user_version(conn)
            if current > SCHEMA_VERSION:
                raise DatabaseError(
                    f"database schema version {current} is newer than this koradaemon ({SCHEMA_VERSION})",
                    hint="upgrade koradaemon or restore an older database",
                )
            if current == SCHEMA_VERSION:
                return
            step = MIGRATIONS[current]
            if isinstance(step, str):
                conn.execute(step)
            else:  # a migration that needs code (e.g. moving rows between tables)
                step(conn)
            conn.execute(f"PRAGMA user_version = {current + 1}")
        log.info("db_migrated", version=current + 1)


def integrity_ok(conn: apsw.Connection) -> bool:
    rows = conn.execute("PRAGMA integrity_check").fetchall()
    return rows == [("ok",)]
