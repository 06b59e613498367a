"""The vault's socket operations against a real daemon: snapshot, snapshots, restore (in place and into
a folder), and their refusals; plus a database from a newer koradaemon refused at start."""

from __future__ import annotations

import apsw
import pytest
from conftest import DaemonProc

from koradaemon.errors import KoraError


def test_snapshot_list_and_restore_through_the_socket(daemon: DaemonProc) -> None:
    state = daemon.root / "alpha" / "state"
    (state / "session.json").write_text('{"turn": 1}')
    daemon.start()
    first = daemon.client_call("snapshot", "alpha")["snapshot"]
    (state / "session.json").write_text('{"turn": 2, "broken": true}')
    second = daemon.client_call("snapshot", "alpha")["snapshot"]
    ids = [s["id"] for s in daemon.client_call("snapshots", "alpha")["snapshots"]]
    assert ids == [first["id"], second["id"]]
    assert daemon.client_call("snapshots", "beta")["snapshots"] == []  # beta sees none of alpha's

    # into a folder under the data root: the chosen snapshot, the live state untouched
    out = daemon.client_call("restore", "alpha", snapshot=first["id"], target="restored/alpha")
    assert out == {"restored": first["id"], "target": "restored/alpha"}
    assert (daemon.root / "restored" / "alpha" / "state0" / "session.json").read_text() == '{"turn": 1}'
    assert (state / "session.json").read_text() == '{"turn": 2, "broken": true}'

    # in place: the state comes back, what it replaced is kept beside it
    out = daemon.client_call("restore", "alpha", snapshot=first["id"])
    assert out["restored"] == first["id"] and out["in_place"] is True
    assert (state / "session.json").read_text() == '{"turn": 1}'
    backups = [p for p in state.parent.iterdir() if p.name.startswith(".state.before-restore-")]
    assert len(backups) == 1 and (backups[0] / "session.json").read_text() == '{"turn": 2, "broken": true}'

    for bad in ({"snapshot": "nope"}, {"snapshot": first["id"], "target": "../outside"},
                {"snapshot": first["id"], "target": "/etc"}):
        with pytest.raises(KoraError):
            daemon.client_call("restore", "alpha", **bad)
    with pytest.raises(KoraError):  # beta has no state dirs and no such snapshot
        daemon.client_call("restore", "beta", snapshot=first["id"])
    assert daemon.stop() == 0


def test_a_database_from_a_newer_koradaemon_is_refused_with_one_clear_line(daemon: DaemonProc) -> None:
    daemon.start()
    assert daemon.stop() == 0
    conn = apsw.Connection(str(daemon.root / "kora_kernel.db"))
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    res = daemon.cli("run", timeout=60)
    assert res.returncode == 74, res.stderr
    assert "newer than this koradaemon" in (res.stdout + res.stderr)
    assert "Traceback" not in res.stdout + res.stderr
