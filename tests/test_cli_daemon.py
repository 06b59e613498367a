"""The CLI against a real daemon: the status health check, read-only offline commands, unreadable
tokens, unlock reports, paging, files, show and tail."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import dropped_user, one_error_line, tree_state
from conftest import DaemonProc, wait_for


def _tamper_first_record(d: DaemonProc, agency: str) -> int:
    """Change the first record of the agency's log without fixing its hash; return the segment's line count."""
    seg = sorted((d.root / "audit" / agency).glob("audit-*.jsonl"))[0]
    lines = seg.read_bytes().splitlines(keepends=True)
    rec = json.loads(lines[0])
    rec["data"]["forged"] = 1
    lines[0] = (json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n").encode()
    seg.write_bytes(b"".join(lines))
    return len(lines)


def test_status_is_a_health_check_and_unlock_reports_the_quarantine(daemon: DaemonProc) -> None:
    (daemon.root / "alpha" / "notes" / "a.md").write_text("alpha text about lentils\n")
    daemon.start()
    res = daemon.cli("status", "--json")
    st = json.loads(res.stdout)
    assert res.returncode == 0 and st["running"] is True and st["health"] == "ok", res.stdout + res.stderr
    assert daemon.stop() == 0
    res = daemon.cli("status", "--json")
    assert res.returncode == 69 and json.loads(res.stdout)["running"] is False
    assert "not running" in daemon.cli("status").stdout

    count = _tamper_first_record(daemon, "alpha")
    verify = daemon.cli("audit", "verify", "--agency", "alpha")
    assert verify.returncode == 65 and "FAIL agency=alpha first_bad_seq=0" in verify.stdout
    daemon.start()
    res = daemon.cli("status")
    assert res.returncode == 77 and "health: lockdown" in res.stdout, res.stdout
    assert daemon.cli("status", "--agency", "beta").returncode == 0, "beta's view: beta is healthy"
    res = daemon.cli("audit", "unlock", "--agency", "alpha", "--reason", "tamper drill")
    assert res.returncode == 0, res.stderr
    assert f"quarantined {count} record line(s) (seq 0..{count - 1}) from 1 segment file(s)" in res.stdout
    qdir = daemon.root / "audit" / "alpha"
    assert f"moved under {qdir}" in res.stdout
    moved = [line.strip() for line in res.stdout.splitlines() if line.strip().startswith("quarantine/")]
    assert len(moved) == 1 and (qdir / moved[0]).is_file()
    assert len((qdir / moved[0]).read_bytes().splitlines()) == count
    wait_for(lambda: daemon.cli("status").returncode == 0, 20, 0.2, "healthy again after the unlock")
    assert daemon.stop() == 0


def test_read_only_commands_change_nothing_on_the_data_root(daemon: DaemonProc) -> None:
    notes = daemon.root / "alpha" / "notes"
    (notes / "a.md").write_text("one\ntwo has parsley\nthree\n")
    daemon.start()
    hit = daemon.search("parsley")[0]
    assert daemon.stop() == 0
    before = tree_state(daemon.root)
    ref = f"alpha/notes/a.md@{hit['offset']}+{hit['length']}"
    for args in (["status"], ["status", "--json"], ["search", "--agency", "alpha", "parsley"],
                 ["files", "--agency", "alpha"], ["files", "--agency", "alpha", "--skipped"],
                 ["show", "--agency", "alpha", "alpha/notes/a.md:2"], ["show", "--agency", "alpha", ref],
                 ["snapshots", "--agency", "alpha"], ["audit", "verify"]):
        res = daemon.cli(*args)
        assert res.returncode in (0, 69), (args, res.stderr)
        assert res.stderr == "", (args, res.stderr)
    assert tree_state(daemon.root) == before
    shown = daemon.cli("show", "--agency", "alpha", "alpha/notes/a.md:2", "--lines", "1")
    assert shown.stdout.strip() == "2│ two has parsley"


@pytest.fixture
def other_user() -> Iterator[tuple[str, list[str], dict[str, str]]]:
    name, prefix, env = dropped_user()
    yield name, prefix, env
    subprocess.run(["userdel", name], capture_output=True)


def test_unreadable_token_with_a_running_daemon_is_77_not_not_running(
        other_user: tuple[str, list[str], dict[str, str]]) -> None:
    _name, prefix, env = other_user
    base = Path(tempfile.mkdtemp(prefix="kora-cli-", dir="/tmp"))  # outside pytest's 0700 folder
    os.chmod(base, 0o755)
    d = DaemonProc(base / "data")
    try:
        os.chmod(d.root, 0o755)
        d.config.chmod(0o644)  # the user may read the config, not the tokens
        (d.root / "alpha" / "notes" / "a.md").write_text("basil\n")
        d.start()
        for args in (["search", "--agency", "alpha", "basil"], ["status", "--agency", "alpha"], ["status"],
                     ["tail", "--agency", "alpha"]):
            res = subprocess.run([*prefix, "-c", str(d.config), *args], capture_output=True, text=True,
                                 env=env, timeout=60, cwd="/tmp", stdin=subprocess.DEVNULL)
            line = one_error_line(res)
            assert res.returncode == 77, (args, res.returncode, line)
            assert "is not readable by uid" in line and "not running" not in line, line
        assert d.stop() == 0
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def test_search_paging_files_show_and_tail(daemon: DaemonProc) -> None:
    notes = daemon.root / "alpha" / "notes"
    for i in range(25):
        (notes / f"f{i:02d}.md").write_text(f"header {i}\n\nline with marjoram number {i}\n")
    (notes / "big.skip").write_text("ignored")
    (notes / "blob.bin").write_bytes(b"\x00\x01\x02" * 100)
    daemon.start()
    wait_for(lambda: len(daemon.search("marjoram")) == 10, 20, what="indexed")
    res = daemon.cli("search", "--agency", "alpha", "--json", "--limit", "1000", "marjoram", check=True)
    hits = json.loads(res.stdout)["hits"]
    assert len(hits) == 25
    page = json.loads(daemon.cli("search", "--agency", "alpha", "--json", "--limit", "10", "--offset", "20",
                                 "marjoram", check=True).stdout)["hits"]
    ref = ("root", "path", "offset", "sha256")
    assert [tuple(h[k] for k in ref) for h in page] == [tuple(h[k] for k in ref) for h in hits[20:25]]
    human = daemon.cli("search", "--agency", "alpha", "--limit", "3", "marjoram", check=True).stdout
    assert sum(1 for line in human.splitlines() if line.startswith("alpha/notes/f")) == 3
    assert "ref alpha/notes/f" in human
    files = daemon.cli("files", "--agency", "alpha", "--json", check=True)
    listing = json.loads(files.stdout)
    assert listing["total"] == 25 and listing["files"][0]["path"] == "f00.md" and listing["files"][0]["chunks"] == 1
    skipped = json.loads(daemon.cli("files", "--agency", "alpha", "--skipped", "--json", check=True).stdout)
    assert [(f["path"], f["skipped"]) for f in skipped["files"]] == [("blob.bin", "binary")]
    human = daemon.cli("files", "--agency", "alpha", "--skipped", check=True).stdout
    assert "binary" in human and "alpha/notes/blob.bin" in human and "skipped files: 1" in human
    h = hits[0]
    ref = f"{h['root']}/{h['path']}@{h['offset']}+{h['length']}"
    chunk = daemon.cli("show", "--agency", "alpha", ref, check=True).stdout
    assert "marjoram" in chunk
    line3 = daemon.cli("show", "--agency", "alpha", f"{h['root']}/{h['path']}:3", "--lines", "1", check=True)
    assert line3.stdout.startswith("3│ line with marjoram")
    with subprocess.Popen([*daemon.cli_cmd(), "tail", "--agency", "alpha", "--json"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=daemon.env) as tail:
        try:
            assert tail.stdout is not None
            first = json.loads(tail.stdout.readline())
            assert first["type"] == "subscribed"
            (notes / "live.md").write_text("streamed chervil\n")
            event = json.loads(tail.stdout.readline())
            assert event["type"] == "index" and event["data"]["path"] == "live.md"
            tail.send_signal(signal.SIGINT)  # Ctrl-C is how a user ends it
            assert tail.wait(10) == 130
            assert tail.stderr is not None and tail.stderr.read() == "", "no traceback on Ctrl-C"
        finally:
            if tail.poll() is None:
                tail.kill()
                tail.wait(10)
    assert daemon.stop() == 0
    shutil.rmtree(daemon.root / "run", ignore_errors=True)
    offline = json.loads(daemon.cli("files", "--agency", "alpha", "--json", check=True).stdout)
    assert offline["total"] == 26


def test_run_on_a_data_root_it_cannot_write_is_one_line(other_user: tuple[str, list[str], dict[str, str]]) -> None:
    _name, prefix, env = other_user
    base = Path(tempfile.mkdtemp(prefix="kora-cli-", dir="/tmp"))
    try:
        root = base / "data"
        (root / "alpha" / "notes").mkdir(parents=True)
        (root / "koradaemon.yaml").write_text("vault: {enabled: false}\nagencies:\n"
                                              "  - agency_id: alpha\n    roots: [alpha/notes]\n")
        for p in (base, root, root / "koradaemon.yaml"):
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        res = subprocess.run([*prefix, "-c", str(root / "koradaemon.yaml"), "run"], capture_output=True, text=True,
                             env=env, timeout=60, cwd="/tmp", stdin=subprocess.DEVNULL)
        line = one_error_line(res)
        assert res.returncode == 77 and "permission denied" in line, line
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_daemon_whose_socket_is_elsewhere_is_not_called_not_running(tmp_path: Path) -> None:
    runtime = Path(tempfile.mkdtemp(prefix="kr", dir="/tmp"))
    d = DaemonProc(tmp_path / "data")
    try:
        d.env["KORA_RUNTIME_DIR"] = str(runtime)
        d.start(wait_ready=False)
        wait_for(lambda: (runtime / "koradaemon.sock").exists(), 30, 0.05, "socket in the runtime dir")
        del d.env["KORA_RUNTIME_DIR"]
        res = d.cli("search", "--agency", "alpha", "x")  # without KORA_RUNTIME_DIR: no token where it looks
        line = one_error_line(res)
        assert res.returncode == 77 and "holds the data root" in line and "KORA_RUNTIME_DIR" in line, line
        d.env["KORA_RUNTIME_DIR"] = str(runtime)
        wait_for(lambda: d.cli("status", "--agency", "alpha").returncode == 0, 30, 0.2, "healthy with the runtime dir")
        assert d.stop() == 0
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        shutil.rmtree(runtime, ignore_errors=True)
