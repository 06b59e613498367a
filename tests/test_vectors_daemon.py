"""Hybrid retrieval in the whole daemon: real inotify, real databases, sqlite-vec, the shipped model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import apsw
import pytest
from conftest import DaemonProc, wait_for

VECTORS = "vectors: {enabled: true, poll_s: 0.05, passage_bytes: 512}"

CAR = """Keeping an automobile in good shape

Take the vehicle to a mechanic when the engine makes a knocking noise. Change the motor oil,
check the brakes, rotate the tyres and look at the gearbox before a long drive on the motorway.
"""
BREAD = """Baking a loaf at home

Mix flour, water, yeast and salt into a dough, knead it, let it rise overnight and bake it
in a hot oven until the crust is brown and the crumb is airy.
"""
GARDEN = """The vegetable plot in spring

Sow carrots and lettuce in the beds, water the seedlings and pull the weeds every week.
"""


def vstatus(d: DaemonProc, agency: str = "alpha") -> dict[str, Any]:
    st = d.status(agency)
    assert st is not None
    return dict(st["agencies"][agency]["vectors"])


def caught_up(d: DaemonProc, agency: str = "alpha") -> dict[str, Any] | None:
    v = vstatus(d, agency)
    st = d.status(agency)
    idle = st is not None and st["queue"]["idle"]
    return v if idle and v["state"] == "ready" and v["lag_chunks"] == 0 and v["passages"] > 0 else None


def search(d: DaemonProc, query: str, mode: str | None = None, agency: str = "alpha") -> dict[str, Any]:
    args: dict[str, Any] = {"query": query, "limit": 5}
    if mode:
        args["mode"] = mode
    return d.client_call("search", agency, **args)


def top_path(d: DaemonProc, query: str, mode: str) -> str | None:
    hits = search(d, query, mode)["hits"]
    return hits[0]["path"] if hits else None


def vector_rows(d: DaemonProc, agency: str) -> int:
    conn = apsw.Connection(str(d.root / "kora_vectors.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return int(conn.execute(f"SELECT count(*) FROM vp_{agency.encode().hex()}").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def vdaemon(tmp_path: Path) -> Any:
    d = DaemonProc(tmp_path, extra=VECTORS)
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


def test_paraphrase_found_by_vector_and_hybrid_not_keyword(vdaemon: DaemonProc) -> None:
    notes = vdaemon.root / "alpha" / "notes"
    (notes / "car.md").write_text(CAR)
    (notes / "bread.md").write_text(BREAD)
    (notes / "garden.md").write_text(GARDEN)
    vdaemon.start()
    wait_for(lambda: caught_up(vdaemon), 60, 0.1, "vectors caught up")
    assert search(vdaemon, "car repair", "keyword")["hits"] == []
    assert top_path(vdaemon, "car repair", "vector") == "car.md"
    fused = search(vdaemon, "car repair")  # the default once vectors exist
    assert fused["mode"] == "hybrid" and fused["hits"][0]["path"] == "car.md"
    hit = fused["hits"][0]
    assert {"offset", "length", "sha256"} <= set(hit["passage"])
    # the passage reference is a byte range of the file with its own sha256
    data = (notes / "car.md").read_bytes()
    p = hit["passage"]
    import hashlib

    assert hashlib.sha256(data[p["offset"] : p["offset"] + p["length"]]).hexdigest() == p["sha256"]
    assert top_path(vdaemon, "sourdough in the oven", "hybrid") == "bread.md"


def test_edits_deletes_and_moves_keep_vectors_consistent(vdaemon: DaemonProc) -> None:
    notes = vdaemon.root / "alpha" / "notes"
    (notes / "car.md").write_text(CAR)
    (notes / "bread.md").write_text(BREAD)
    vdaemon.start()
    wait_for(lambda: caught_up(vdaemon), 60, 0.1, "vectors caught up")
    before = vector_rows(vdaemon, "alpha")

    def snippets(query: str, path: str) -> list[str]:
        return [h["snippet"] for h in search(vdaemon, query, "vector")["hits"] if h["path"] == path]

    (notes / "car.md").write_text(GARDEN)  # edit: the file now speaks of gardening
    wait_for(lambda: top_path(vdaemon, "growing vegetables", "vector") == "car.md", 30, 0.1, "edit followed")
    assert all("mechanic" not in s for s in snippets("vehicle maintenance", "car.md"))  # old text never served
    wait_for(lambda: caught_up(vdaemon), 30, 0.1, "caught up after edit")

    os.rename(notes / "car.md", notes / "plot.md")  # move: same chunks, new path
    wait_for(lambda: top_path(vdaemon, "growing vegetables", "vector") == "plot.md", 30, 0.1, "move followed")
    assert all(h["path"] != "car.md" for h in search(vdaemon, "growing vegetables", "vector")["hits"])

    os.unlink(notes / "plot.md")  # delete: its vectors go
    wait_for(lambda: all(h["path"] != "plot.md" for h in search(vdaemon, "growing vegetables", "vector")["hits"]),
             30, 0.1, "delete followed")
    wait_for(lambda: vector_rows(vdaemon, "alpha") < before, 30, 0.1, "vectors of the deleted file swept")
    assert search(vdaemon, "growing vegetables", "vector")["hits"][0]["path"] == "bread.md"


def test_agency_scope_holds_for_vectors(vdaemon: DaemonProc) -> None:
    (vdaemon.root / "beta" / "notes" / "car.md").write_text(CAR)
    (vdaemon.root / "alpha" / "notes" / "bread.md").write_text(BREAD)
    vdaemon.start()
    wait_for(lambda: caught_up(vdaemon, "beta") and caught_up(vdaemon, "alpha"), 60, 0.1, "both caught up")
    alpha = search(vdaemon, "automobile engine", "vector")["hits"]
    assert [h["path"] for h in alpha] == ["bread.md"]  # alpha's only file, never beta's
    beta = search(vdaemon, "automobile engine", "vector", agency="beta")["hits"]
    assert [h["path"] for h in beta] == ["car.md"]
    assert vector_rows(vdaemon, "alpha") > 0 and vector_rows(vdaemon, "beta") > 0
    st = vdaemon.status("alpha")
    assert st is not None and set(st["agencies"]) == {"alpha"}


def test_lockdown_stops_the_embedding_step_for_that_agency_only(tmp_path: Path) -> None:
    from test_daemon_lockdown import tamper

    d = DaemonProc(tmp_path)  # first run without vectors: chunks indexed, nothing embedded
    (tmp_path / "alpha" / "notes" / "car.md").write_text(CAR)
    (tmp_path / "beta" / "notes" / "bread.md").write_text(BREAD)
    try:
        d.start()
        assert d.stop() == 0
        tamper(d, "alpha")
        d.config.write_text(d.config.read_text() + VECTORS + "\n")
        d.start()
        wait_for(lambda: caught_up(d, "beta"), 60, 0.1, "beta embedded")
        assert vector_rows(d, "alpha") == 0  # alpha is locked: no automatic work for it
        res = d.cli("audit", "unlock", "--agency", "alpha", "--reason", "drill")
        assert res.returncode == 0, res.stderr
        wait_for(lambda: vector_rows(d, "alpha") > 0, 60, 0.1, "alpha embedded after the unlock")
        assert top_path(d, "fixing an automobile", "vector") == "car.md"
    finally:
        d.stop()
