"""A running daemon under files swapped for symlinks, FIFOs, sockets and devices right after a write:
nothing outside the agency's root is ever indexed, no thread blocks, get_chunk refuses and answers."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest
from conftest import BASE_CONFIG, DaemonProc, wait_for

from koradaemon.errors import KoraError

OUTSIDE_MARKER = "quetzalcoatlusoutside"  # only in a file outside the data root
BETA_MARKER = "pterodactylusbeta"  # only in beta's root


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="kds"))
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def shipped_daemon(root: Path) -> DaemonProc:
    """A daemon with the shipped default of one indexer thread: bulk files then go through the prep
    worker process, which must open them as safely as the daemon's own threads."""
    root.mkdir(parents=True, exist_ok=True)
    config = BASE_CONFIG.format(extra="", vault="false").replace("workers: 2", "workers: 1")
    assert "workers: 1" in config
    (root / "koradaemon.yaml").write_text(config)
    return DaemonProc(root)


def link_targets(tmp_path: Path, d: DaemonProc) -> tuple[Path, Path]:
    """The files a swapped-in link points at: one outside the data root, one in beta's root; each
    holds its marker, which alpha's index must never hold."""
    outside = tmp_path / "outside.txt"
    outside.write_text(f"outside the data root: {OUTSIDE_MARKER}\n")
    beta_file = d.root / "beta" / "notes" / "b.md"
    beta_file.write_text(f"beta's own text: {BETA_MARKER}\n")
    return outside, beta_file


def skipped_reasons(d: DaemonProc, agency: str = "alpha") -> dict[str, int]:
    conn = apsw.Connection(os.fspath(d.root / "kora_kernel.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = conn.execute("SELECT skipped, count(*) FROM documents WHERE agency_id = ? AND skipped IS NOT NULL"
                            " GROUP BY skipped", (agency,)).fetchall()
    finally:
        conn.close()
    return {str(r): int(n) for r, n in rows}


def all_indexed_text(d: DaemonProc) -> str:
    """Every term of every full-text table, all agencies (read straight from the database: the
    tables keep no text, their fts5vocab tables list what was indexed)."""
    conn = apsw.Connection(os.fspath(d.root / "kora_kernel.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        tables = [str(r[0]) for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%USING fts5%'")]
        assert tables, "no full-text tables found"
        terms = []
        for i, t in enumerate(tables):
            conn.execute(f"CREATE VIRTUAL TABLE temp.vocab{i} USING fts5vocab(main, '{t}', 'row')")
            terms += [str(r[0]) for r in conn.execute(f"SELECT term FROM temp.vocab{i}")]
        return "\n".join(terms)
    finally:
        conn.close()


def settle(d: DaemonProc) -> None:
    wait_for(lambda: (st := d.status()) is not None and st["queue"]["idle"], 60, 0.05, "queue idle")


def swap_in(path: Path, make: str, tmp_dir: Path, target: Path) -> None:
    """Replace ``path`` atomically by a symlink to ``target``, a FIFO, a socket or a device node."""
    tmp = tmp_dir / f".swap-{path.name}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    if make == "symlink":
        os.symlink(target, tmp)
    elif make == "fifo":
        os.mkfifo(tmp)
    elif make == "socket":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(os.fspath(tmp))
        s.close()
    else:
        os.mknod(tmp, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero: reading never ends
    os.replace(tmp, path)


def test_symlink_swapped_in_after_a_write_never_indexes_outside_bytes(tmp_path: Path) -> None:
    d = shipped_daemon(tmp_path / "root")
    outside, beta_file = link_targets(tmp_path, d)
    notes = d.root / "alpha" / "notes"
    swaps = tmp_path / "swaps"
    swaps.mkdir()
    try:
        d.start()
        wait_for(lambda: d.search(BETA_MARKER, "beta"), 30, what="beta indexed")
        for i in range(100):
            f = notes / f"leak{i}.txt"
            f.write_text(f"harmless {i}\n")
            time.sleep((i % 10) / 1000)  # the race window: 0-9 ms after the write (not a synchronisation)
            # The link is made next to the file (as `ln -s` + `mv -T` would) or outside the root.
            swap_in(f, "symlink", notes if i % 4 < 2 else swaps, outside if i % 2 else beta_file)
        (notes / "after.md").write_text("written after the swaps: ammonite\n")
        wait_for(lambda: d.search("ammonite"), 60, what="indexing goes on")
        settle(d)
        assert d.search(OUTSIDE_MARKER) == [] and d.search(BETA_MARKER) == []
        text = all_indexed_text(d)
        assert "ammonite" in text and BETA_MARKER in text, "the direct read of the database sees the text"
        assert OUTSIDE_MARKER not in text
        # The check can fail: the same bytes written as a plain file in alpha's root are indexed.
        (notes / "control.md").write_text(f"a copy: {OUTSIDE_MARKER}\n")
        wait_for(lambda: d.search(OUTSIDE_MARKER), 30, what="control file indexed")
        assert d.stop() == 0
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def test_files_swapped_for_links_during_the_start_up_crawl_never_index_outside_bytes(tmp_path: Path) -> None:
    """The start-up crawl hands files to the prep worker process with the size it saw; links swapped
    in meanwhile (to a file outside the data root, to beta's file) are never read there either."""
    d = shipped_daemon(tmp_path / "root")
    outside, beta_file = link_targets(tmp_path, d)
    notes = d.root / "alpha" / "notes"
    names = [notes / f"d{i % 20}" / f"n{i}.txt" for i in range(3000)]
    for i, f in enumerate(names):
        f.parent.mkdir(exist_ok=True)
        f.write_text(f"note {i} of the crawl\n" * 20)
    try:
        d.start(wait_ready=False)
        for i, f in enumerate(names[::7]):  # swapped while the daemon starts and crawls
            swap_in(f, "symlink", f.parent, outside if i % 2 else beta_file)
        (notes / "after.md").write_text("written after the swaps: ammonite\n")
        wait_for(lambda: d.status() is not None, 60, what="the daemon to answer")
        wait_for(lambda: d.search("ammonite"), 60, what="indexing goes on")
        settle(d)
        assert d.search(OUTSIDE_MARKER) == [] and d.search(BETA_MARKER) == []
        text = all_indexed_text(d)
        assert "crawl" in text.split() and BETA_MARKER in text
        assert OUTSIDE_MARKER not in text
        st = d.status()
        assert st is not None and st["prep_worker"]["files"] > 0, "the crawl went through the worker"
        assert st["prep_worker"]["crashes"] == 0
        assert d.stop() == 0
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


@pytest.mark.parametrize("make", ["fifo", "socket", "device"])
def test_special_file_swapped_in_never_blocks_indexing(tmp_path: Path, short_dir: Path, make: str) -> None:
    if make == "device":
        try:
            os.mknod(short_dir / "probe", stat.S_IFCHR | 0o600, os.makedev(1, 5))
        except OSError as exc:
            pytest.skip(f"cannot create device nodes here: {exc.strerror}")
        (short_dir / "probe").unlink()
    d = shipped_daemon(tmp_path / "root")
    notes = d.root / "alpha" / "notes"
    try:
        d.start()
        for i in range(100):
            f = notes / f"special{i}.txt"
            f.write_text(f"about to become a {make} {i}\n")
            time.sleep((i % 10) / 1000)  # the race window: 0-9 ms after the write
            swap_in(f, make, short_dir, Path())
        (notes / "after.md").write_text("written after the swaps: belemnite\n")
        wait_for(lambda: d.search("belemnite"), 60, what="indexing goes on after the swaps")
        settle(d)
        reasons = skipped_reasons(d)
        assert set(reasons) <= {make}, reasons  # whatever was seen in place of a file, by its kind
        t0 = time.monotonic()
        assert d.stop(timeout=30) == 0
        assert time.monotonic() - t0 < 15, "SIGTERM stops promptly (no worker stuck in open())"
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def test_get_chunk_on_special_files_refuses_without_pinning_threads(tmp_path: Path, short_dir: Path) -> None:
    d = shipped_daemon(tmp_path / "root")
    notes = d.root / "alpha" / "notes"
    (notes / "a.md").write_text("reference me: nautilus\n")
    (d.root / "beta" / "notes" / "secret.md").write_text("beta secret: nautilus\n")
    try:
        d.start()
        hit = next(h for h in d.search("nautilus") if h["path"] == "a.md")
        ref = {"root": "alpha/notes", "path": "a.md", "offset": hit["offset"], "length": hit["length"],
               "sha256": hit["sha256"]}
        assert "nautilus" in d.client_call("get_chunk", **ref)["text"]
        names = []
        for i, make in enumerate(["fifo", "socket", "symlink"] * 3):
            name = f"special{i}.md"
            target = d.root / "beta" / "notes" / "secret.md" if i % 2 else notes / "a.md"
            swap_in(notes / name, make, short_dir, target)
            names.append(name)
        (notes / "dirlink").symlink_to(d.root / "beta" / "notes", target_is_directory=True)
        names.append("dirlink/secret.md")

        def one(i: int) -> str:
            try:
                d.client_call("get_chunk", **{**ref, "path": names[i % len(names)]})
            except KoraError as exc:
                return exc.code
            return "served"

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(one, range(80)))
        assert set(codes) == {"data"}, codes
        t0 = time.monotonic()
        assert "nautilus" in d.client_call("get_chunk", **ref)["text"], "a normal request still answers"
        assert time.monotonic() - t0 < 5
        assert d.client_call("ping")["pong"] is True
        d.signal(signal.SIGTERM)
        assert d.proc is not None and d.proc.wait(30) == 0
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def skip_records(d: DaemonProc, agency: str = "alpha") -> list[dict[str, object]]:
    out = []
    for seg in sorted((d.root / "audit" / agency).glob("audit-*.jsonl")):
        for line in seg.read_text().splitlines():
            rec = json.loads(line)
            if rec["type"] == "skip":
                out.append(rec["data"])
    return out


def test_a_link_inside_the_root_is_skipped_once_and_its_target_indexed(tmp_path: Path) -> None:
    d = shipped_daemon(tmp_path / "root")
    notes = d.root / "alpha" / "notes"
    (notes / "target.md").write_text("the target's own text: trilobite\n")
    (notes / "alias.md").symlink_to(notes / "target.md")
    try:
        d.start()
        assert {h["path"] for h in d.search("trilobite")} == {"target.md"}
        wait_for(lambda: skipped_reasons(d) == {"symlink": 1}, 30, what="link recorded as skipped")
        wait_for(lambda: [r["path"] for r in skip_records(d)] == ["alias.md"], 30, what="skip audited")
        assert d.stop() == 0
        d.start()  # the start-up crawl sees the link unchanged: nothing is re-recorded
        settle(d)
        assert skipped_reasons(d) == {"symlink": 1}
        assert [r["path"] for r in skip_records(d)] == ["alias.md"]
        assert d.stop() == 0
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def test_ignore_files_are_never_read_through_a_link_or_from_a_fifo(tmp_path: Path) -> None:
    d = shipped_daemon(tmp_path / "root")
    notes = d.root / "alpha" / "notes"
    os.mkfifo(notes / ".koraignore")  # nobody writes it: reading it would block the start for ever
    (d.root / "beta" / "notes" / "rules.txt").write_text("*.md\n")
    (notes / ".gitignore").symlink_to(d.root / "beta" / "notes" / "rules.txt")
    (notes / "a.md").write_text("indexed despite the linked rules: coelacanth\n")
    try:
        d.start()  # READY with its watchers up: the FIFO did not block the rule loading
        assert d.search("coelacanth"), "beta's file was not read as alpha's ignore rules"
        (notes / ".gitignore").unlink()
        os.mkfifo(notes / ".gitignore")  # a changed ignore file reloads the rules: still no block
        (notes / "b.md").write_text("after the swap: horseshoe\n")
        wait_for(lambda: d.search("horseshoe"), 30, what="indexing goes on after the rules reload")
        assert d.stop() == 0
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
