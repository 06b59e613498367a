"""The whole daemon in a subprocess: real inotify, real database file, real control socket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import apsw
from conftest import DaemonProc, wait_for


def indexed(d: DaemonProc, agency: str = "alpha") -> dict[str, str]:
    """path → sha256 of what the index holds for the agency's single root."""
    conn = apsw.Connection(str(d.root / "kora_kernel.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = conn.execute("SELECT path, sha256 FROM documents WHERE agency_id = ?", (agency,)).fetchall()
    finally:
        conn.close()
    return {p: s for p, s in rows}


def has_hit(d: DaemonProc, query: str, path: str, agency: str = "alpha") -> bool:
    return any(h["path"] == path for h in d.search(query, agency))


def test_live_changes_reach_the_index(daemon: DaemonProc) -> None:
    notes = daemon.root / "alpha" / "notes"
    daemon.start()
    (notes / "a.md").write_text("first draft about parsnips\n")
    wait_for(lambda: has_hit(daemon, "parsnips", "a.md"), 10, what="create indexed")

    (notes / "a.md").write_text("second draft about turnips\n")
    wait_for(lambda: has_hit(daemon, "turnips", "a.md") and not daemon.search("parsnips"), 10, what="edit")

    tmp = notes / ".a.md.swp"  # editor-style atomic save: temp file + rename over the target
    tmp.write_text("third draft about celeriac\n")
    os.replace(tmp, notes / "a.md")
    wait_for(lambda: has_hit(daemon, "celeriac", "a.md") and not daemon.search("turnips"), 10, what="atomic save")
    assert ".a.md.swp" not in indexed(daemon)

    os.rename(notes / "a.md", notes / "b.md")
    wait_for(lambda: has_hit(daemon, "celeriac", "b.md") and "a.md" not in indexed(daemon), 10, what="rename")

    (notes / "sub").mkdir()
    (notes / "sub" / "c.md").write_text("deep note on kohlrabi\n")
    wait_for(lambda: has_hit(daemon, "kohlrabi", "sub/c.md"), 10, what="file in new dir")
    os.rename(notes / "sub", notes / "moved")
    wait_for(lambda: has_hit(daemon, "kohlrabi", "moved/c.md") and "sub/c.md" not in indexed(daemon), 10,
             what="directory move")

    os.unlink(notes / "b.md")
    wait_for(lambda: "b.md" not in indexed(daemon), 10, what="delete")
    (notes / "ignored.skip").write_text("kohlrabi in an ignored file\n")
    (notes / ".gitignore").write_text("private/\n")
    (notes / "private").mkdir()
    (notes / "private" / "p.md").write_text("kohlrabi secret\n")
    (notes / "marker.md").write_text("sentinel written last\n")
    wait_for(lambda: has_hit(daemon, "sentinel", "marker.md"), 10, what="marker")
    assert "ignored.skip" not in indexed(daemon)
    # A new .gitignore reloads the rules and rescans: p.md may be seen before the rule, never after.
    wait_for(lambda: "private/p.md" not in indexed(daemon), 10, what="newly ignored file dropped")
    assert daemon.stop() == 0


def test_restart_after_offline_changes_converges(daemon: DaemonProc) -> None:
    notes = daemon.root / "alpha" / "notes"
    for i in range(30):
        (notes / f"f{i}.txt").write_text(f"file number {i} zucchini\n")
    daemon.start()
    assert len(indexed(daemon)) == 30
    assert daemon.stop() == 0
    # While the daemon is down: edit, delete, add, rename.
    (notes / "f0.txt").write_text("changed while down: artichoke\n")
    os.unlink(notes / "f1.txt")
    (notes / "new.txt").write_text("born while down: okra\n")
    os.rename(notes / "f2.txt", notes / "g2.txt")
    daemon.start()
    disk = {p.name for p in notes.iterdir()}
    assert set(indexed(daemon)) == disk
    assert has_hit(daemon, "artichoke", "f0.txt") and has_hit(daemon, "okra", "new.txt")
    assert daemon.stop() == 0


def test_agencies_are_isolated_through_the_socket(daemon: DaemonProc) -> None:
    (daemon.root / "alpha" / "notes" / "a.md").write_text("alpha knows about quinoa\n")
    (daemon.root / "beta" / "notes" / "b.md").write_text("beta knows about sorghum\n")
    daemon.start()
    assert has_hit(daemon, "quinoa", "a.md", "alpha")
    assert daemon.search("quinoa", "beta") == []
    assert daemon.search("sorghum", "alpha") == []
    assert has_hit(daemon, "sorghum", "b.md", "beta")
    # alpha's token cannot be used to read beta.
    from koradaemon.control.client import ControlClient
    from koradaemon.errors import AuthError

    alpha_token = (daemon.root / "run" / "tokens" / "alpha.token").read_text().strip()
    with ControlClient(daemon.root / "run" / "koradaemon.sock") as c:
        try:
            c.call("search", "beta", alpha_token, query="sorghum")
            raise AssertionError("cross-agency request was served")
        except AuthError:
            pass
    assert daemon.stop() == 0


def test_bad_files_are_skipped_and_legacy_text_indexed(daemon: DaemonProc) -> None:
    notes = daemon.root / "alpha" / "notes"
    (notes / "latin1.txt").write_bytes(b"caf\xe9 au lait\n")
    (notes / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    (notes / "empty.txt").write_bytes(b"")
    with open(notes / "huge.txt", "wb") as fh:
        for i in range(120_000):
            fh.write(b"a line of filler text for the huge file %d\n" % i)
        fh.write(b"needle at the very end\n")
    daemon.start()
    st = daemon.client_call("status")
    reasons = st["agencies"]["alpha"]["skipped_reasons"]
    assert reasons.get("binary") == 1 and not reasons.get("invalid_utf8")  # Latin-1 is decoded, not skipped
    assert has_hit(daemon, "needle", "huge.txt")
    assert has_hit(daemon, "café", "latin1.txt"), "Latin-1 text is decoded (cp1252 rule) and indexed"
    assert "empty.txt" in indexed(daemon)
    assert daemon.stop() == 0


def test_cli_search_json_and_query_errors(daemon: DaemonProc) -> None:
    (daemon.root / "alpha" / "notes" / "a.md").write_text("para one\n\nthe word fennel is here\n")
    daemon.start()
    res = daemon.cli("search", "--agency", "alpha", "--json", "fennel", check=True)
    hits = json.loads(res.stdout)["hits"]
    assert hits[0]["path"] == "a.md" and hits[0]["offset"] == 0 and len(hits[0]["sha256"]) == 64
    (start, end), = hits[0]["highlights"]
    assert hits[0]["snippet"][start:end] == "fennel" and hits[0]["match_line"] == 3
    human = daemon.cli("search", "--agency", "alpha", "fennel", check=True)
    assert "alpha/notes/a.md" in human.stdout
    bad = daemon.cli("search", "--agency", "alpha", "--", "-fennel")
    assert bad.returncode == 64 and "nothing to search for" in bad.stderr
    chunk = daemon.client_call("get_chunk", root="alpha/notes", path="a.md", offset=hits[0]["offset"],
                               length=hits[0]["length"], sha256=hits[0]["sha256"])
    assert "fennel" in chunk["text"]
    assert daemon.stop() == 0
    offline = daemon.cli("search", "--agency", "alpha", "--json", "fennel", check=True)
    assert json.loads(offline.stdout)["hits"][0]["path"] == "a.md"


def test_kill9_during_bulk_indexing_then_restart(daemon: DaemonProc) -> None:
    notes = daemon.root / "alpha" / "notes"
    for d in range(20):
        sub = notes / f"d{d}"
        sub.mkdir()
        for i in range(150):
            (sub / f"f{i}.txt").write_text(("lorem ipsum dolor sit amet " * 40) + f"\nmark{d}x{i}\n")
    daemon.start(wait_ready=False)
    db = daemon.root / "kora_kernel.db"

    def some_indexed() -> bool:
        try:
            return 0 < len(indexed(daemon)) < 3000
        except apsw.Error:
            return False

    wait_for(some_indexed, 30, 0.005, "bulk indexing under way")
    daemon.kill9()
    daemon.start()
    conn = apsw.Connection(str(db))
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    disk = {str(p.relative_to(notes)) for p in notes.rglob("*.txt")}
    assert set(indexed(daemon)) == disk
    res = daemon.cli("audit", "verify", "--agency", "alpha")
    assert res.returncode == 0, res.stdout + res.stderr
    assert daemon.stop() == 0


def test_check_config_reports_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("agencies:\n  - agency_id: a\n    roots: [/etc]\n")
    res = subprocess.run([sys.executable, "-m", "koradaemon", "-c", str(cfg), "check-config"],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert res.returncode == 78
    assert "agencies[0].roots[0]: line 3" in res.stderr
    good = tmp_path / "good.yaml"
    good.write_text("vault: {enabled: false}\nagencies:\n  - agency_id: a\n    roots: [notes]\n")
    (tmp_path / "notes").mkdir()
    res = subprocess.run([sys.executable, "-m", "koradaemon", "-c", str(good), "check-config"],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert res.returncode == 0 and "agency a" in res.stdout
