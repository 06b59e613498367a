"""The daemon's read connections are reused across client threads, never with a snapshot held."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import apsw

from koradaemon.daemon.operations import Operations, OpsContext
from koradaemon.index.db import open_db


def ops_for(tmp_path: Path) -> Operations:
    open_db(tmp_path / "k.db").close()  # created and migrated, as the daemon does at start
    return Operations(cast(OpsContext, SimpleNamespace(db_path=tmp_path / "k.db")))


def test_a_connection_is_reused_by_the_next_client_thread(tmp_path: Path) -> None:
    ops = ops_for(tmp_path)
    seen: list[Any] = []

    def client() -> None:
        with ops._reading() as conn:
            seen.append(conn)
            conn.execute("SELECT count(*) FROM documents").fetchall()

    for _ in range(3):  # one thread per client connection, one after another
        t = threading.Thread(target=client)
        t.start()
        t.join(10)
    assert len(seen) == 3 and seen[0] is seen[1] is seen[2]
    ops.close()  # at stop: the idle connection is closed (the writer's must be the last one)
    try:
        seen[0].execute("SELECT 1")
        raise AssertionError("the idle connection was closed")
    except apsw.ConnectionClosedError:
        pass


def test_a_connection_left_in_a_read_transaction_is_closed_not_kept(tmp_path: Path) -> None:
    ops = ops_for(tmp_path)
    with ops._reading() as conn:
        cursor = conn.execute("SELECT name FROM sqlite_master")
        next(cursor)  # a statement still open: the connection holds a snapshot
        held = conn
    with ops._reading() as conn:
        assert conn is not held
    try:
        held.execute("SELECT 1")
        raise AssertionError("the held connection was closed")
    except apsw.ConnectionClosedError:
        pass
    ops.close()
