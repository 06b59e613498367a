"""File names that are not UTF-8 (bytes on Linux): indexed, shown escaped, round-tripped to the file.

In the store with a real writer thread, and in a running daemon with real inotify events.
"""

from __future__ import annotations

import os
from pathlib import Path

import apsw
import pytest
from conftest import DaemonProc, wait_for
from hypothesis import given
from hypothesis import strategies as st

from koradaemon.index.db import open_db
from koradaemon.index.jobs import DeleteJob, MoveJob
from koradaemon.index.names import fs_name, shown_name
from koradaemon.index.prepare import ChunkParams, prepare_index
from koradaemon.index.retrieval import ChunkRef, FileTexts, read_chunk_text
from koradaemon.index.store import AgencyStore
from koradaemon.index.writer import Applied, Writer

ROOT = "notes"
BAD = b"bad\xff.md"  # not UTF-8
SHOWN = "bad\\xff.md"  # how it is stored, shown and audited


@given(st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b))
def test_shown_names_are_valid_text_and_reversible(raw: bytes) -> None:
    fs = os.fsdecode(raw)
    shown = shown_name(fs)
    shown.encode("utf-8")  # always storable and printable
    assert os.fsencode(fs_name(shown)) == raw


def test_shown_names_are_unambiguous() -> None:
    assert shown_name(os.fsdecode(b"a\xff")) == "a\\xff"
    assert shown_name("a\\xff") == "a\\\\xff"  # a real backslash followed by 'xff' is a different name
    assert fs_name("a\\\\xff") == "a\\xff"
    with pytest.raises(ValueError):
        fs_name("a\\q")


@pytest.fixture
def env(writer_env: tuple[Path, Writer, list[Applied]]) -> tuple[Path, Writer, list[Applied]]:
    return writer_env  # conftest: a started writer on tmp_path/k.db, the root folder "notes"


def index(tmp: Path, writer: Writer, raw: bytes) -> None:
    rel = os.fsdecode(raw)
    conn = open_db(tmp / "k.db")
    known = AgencyStore(conn, "a").document(ROOT, rel)
    job = prepare_index("a", ROOT, rel, tmp / ROOT / rel, known, ChunkParams(), bulk=False)
    assert job is not None
    writer.submit(job)
    writer.flush()
    conn.close()


def paths(tmp: Path) -> list[str]:
    conn = open_db(tmp / "k.db")
    try:
        return sorted(r[0] for r in conn.execute("SELECT path FROM documents"))
    finally:
        conn.close()


def test_store_indexes_renames_and_deletes_non_utf8_names(env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, applied = env
    (tmp / ROOT / os.fsdecode(BAD)).write_bytes(b"rutabaga harvest notes\n")
    index(tmp, writer, BAD)
    assert writer.alive(), "the writer survives a non-UTF-8 name"
    conn = open_db(tmp / "k.db")
    hits = AgencyStore(conn, "a", FileTexts(tmp, (ROOT,))).search("rutabaga")
    assert [h.path for h in hits] == [SHOWN]
    assert applied[-1].type == "index" and applied[-1].data["path"] == SHOWN
    ref = ChunkRef(ROOT, hits[0].path, hits[0].byte_offset, hits[0].byte_length, hits[0].sha256)
    assert read_chunk_text(tmp, (ROOT,), ref) == "rutabaga harvest notes\n"
    mtime = os.stat(tmp / ROOT / os.fsdecode(BAD)).st_mtime_ns
    assert AgencyStore(conn, "a").known_files(ROOT) == {os.fsdecode(BAD): (23, mtime)}

    (tmp / ROOT / "dir\udcfe").mkdir()
    os.rename(tmp / ROOT / os.fsdecode(BAD), tmp / ROOT / "dir\udcfe" / "x\udcc3.md")
    writer.submit(MoveJob("a", ROOT, os.fsdecode(BAD), "dir\udcfe/x\udcc3.md"))
    writer.flush()
    assert paths(tmp) == ["dir\\xfe/x\\xc3.md"]
    os.rename(tmp / ROOT / "dir\udcfe", tmp / ROOT / "moved\udc80")
    writer.submit(MoveJob("a", ROOT, "dir\udcfe", "moved\udc80", tree=True))
    writer.flush()
    assert paths(tmp) == ["moved\\x80/x\\xc3.md"]
    hit = AgencyStore(conn, "a", FileTexts(tmp, (ROOT,))).search("rutabaga")[0]
    ref = ChunkRef(ROOT, hit.path, hit.byte_offset, hit.byte_length, hit.sha256)
    assert read_chunk_text(tmp, (ROOT,), ref).startswith("rutabaga")
    writer.submit(DeleteJob("a", ROOT, "moved\udc80", tree=True))
    writer.flush()
    assert paths(tmp) == [] and AgencyStore(conn, "a", FileTexts(tmp, (ROOT,))).search("rutabaga") == []
    assert [a.data.get("path", a.data.get("src")) for a in applied] == [SHOWN, SHOWN, "dir\\xfe", "moved\\x80"]
    conn.close()


def test_names_with_backslashes_do_not_collide(env: tuple[Path, Writer, list[Applied]]) -> None:
    tmp, writer, _ = env
    (tmp / ROOT / "a\udcff").write_bytes(b"first parsnip\n")  # bytes a, 0xff
    (tmp / ROOT / "a\\xff").write_bytes(b"second parsnip\n")  # the characters a \ x f f
    index(tmp, writer, b"a\xff")
    index(tmp, writer, b"a\\xff")
    assert paths(tmp) == ["a\\\\xff", "a\\xff"]


def indexed(d: DaemonProc) -> list[str]:
    conn = apsw.Connection(str(d.root / "kora_kernel.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return sorted(r[0] for r in conn.execute("SELECT path FROM documents WHERE agency_id = 'alpha'"))
    finally:
        conn.close()


def test_running_daemon_handles_non_utf8_names(daemon: DaemonProc) -> None:
    notes = os.fsencode(daemon.root / "alpha" / "notes")
    (Path(os.fsdecode(notes + b"/old\xfe.md"))).write_bytes(b"present at start: salsify\n")
    daemon.start()
    wait_for(lambda: "old\\xfe.md" in indexed(daemon), 20, what="crawl indexes a non-UTF-8 name")

    with open(notes + b"/" + BAD, "wb") as fh:
        fh.write(b"live note about rutabaga\n")
    wait_for(lambda: any(h["path"] == SHOWN for h in daemon.search("rutabaga")), 20, what="live create")
    hit = next(h for h in daemon.search("rutabaga") if h["path"] == SHOWN)
    got = daemon.client_call("get_chunk", root="alpha/notes", path=hit["path"], offset=hit["offset"],
                             length=hit["length"], sha256=hit["sha256"])
    assert got["text"] == "live note about rutabaga\n"

    os.rename(notes + b"/" + BAD, notes + b"/ren\xe9.md")
    wait_for(lambda: "ren\\xe9.md" in indexed(daemon) and SHOWN not in indexed(daemon), 20, what="rename")
    os.mkdir(notes + b"/d\x81")
    os.rename(notes + b"/ren\xe9.md", notes + b"/d\x81/in\xff.md")
    wait_for(lambda: "d\\x81/in\\xff.md" in indexed(daemon), 20, what="move into a non-UTF-8 directory")
    os.rename(notes + b"/d\x81", notes + b"/e\x82")
    wait_for(lambda: indexed(daemon) == ["e\\x82/in\\xff.md", "old\\xfe.md"], 20, what="directory move")
    os.unlink(notes + b"/e\x82/in\xff.md")
    os.unlink(notes + b"/old\xfe.md")
    wait_for(lambda: indexed(daemon) == [], 20, what="deletes")
    st = daemon.status()
    assert st is not None and st["ready"]
    assert daemon.stop() == 0
    assert not [e for e in daemon.log_events() if e.get("event") in ("writer_crashed", "writer_job_crashed")]
    assert daemon.cli("audit", "verify").returncode == 0
