"""Issue 13: `status` shows each agency's sync (files found / done, bytes, MB/s, ETA, walk done),
says while results are incomplete (and `search` says so too), the agency's real queue depth,
queued → searchable latency per phase, and the index size on disk.

A real daemon (in this process, so the test can hold its writer back with a real writer job that
waits), real files, the real control socket and the real CLI.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for

from koradaemon.config import load_config
from koradaemon.control.client import ControlClient
from koradaemon.daemon.assembler import Daemon
from koradaemon.daemon.status import full_status
from koradaemon.index.jobs import CallJob

CONFIG = """\
version: 1
shutdown_timeout_s: 20
log: {level: info, format: json}
index: {workers: 2, optimize_idle_s: 60, bulk_batch_files: 10}
watch: {debounce_ms: 20, queue_max: 40}
vault: {enabled: false}
agencies:
  - {agency_id: alpha, roots: [alpha/notes]}
  - {agency_id: beta, roots: [beta/notes]}
"""
HIGH_WATER = 20  # the crawl stops queueing at this depth: queue_max // 2 (index/service.py)


def write_files(folder: Path, prefix: str, n: int) -> int:
    """``n`` files of different sizes; returns their total size as the disk reports it."""
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(n):
        p = folder / f"{prefix}{i:04d}.md"
        p.write_text(f"{prefix} note {i} " + "lorem ipsum " * (i % 7 + 1) + "\n")
        total += os.stat(p).st_size
    return total


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Daemon]:
    (tmp_path / "koradaemon.yaml").write_text(CONFIG)
    for agency in ("alpha", "beta"):
        (tmp_path / agency / "notes").mkdir(parents=True)
    daemon = Daemon(load_config(tmp_path / "koradaemon.yaml", data_root=tmp_path))
    daemon.data_root_for_test = tmp_path  # type: ignore[attr-defined]
    try:
        yield daemon
    finally:
        daemon.stop()


def call(root: Path, op: str, agency: str = "alpha", **args: Any) -> dict[str, Any]:
    token = (root / "run" / "tokens" / f"{agency}.token").read_text().strip()
    with ControlClient(root / "run" / "koradaemon.sock", timeout=30) as c:
        return dict(c.call(op, agency, token, **args))


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "koradaemon", "-c", str(root / "koradaemon.yaml"), "--data-root", str(root), *args]
    env = {k: v for k, v in os.environ.items() if k not in ("KORA_RUNTIME_DIR", "RUNTIME_DIRECTORY", "KORA_CONFIG")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)


def test_status_follows_a_held_back_sync_to_its_totals(running: Daemon) -> None:
    daemon = running
    root: Path = daemon.data_root_for_test  # type: ignore[attr-defined]
    first = write_files(root / "alpha" / "notes", "first", 30)
    daemon.start()

    # the start-up crawl: complete, with exactly the files written before the start
    st = wait_for(lambda: (s := call(root, "status")) and not s["incomplete"] and s["crawl"]["initial_sync"] and s,
                  20, 0.02, "initial sync complete")
    sync = st["crawl"]["sync"]
    assert (sync["kind"], sync["state"], sync["walk_done"]) == ("initial", "done", True)
    assert (sync["found"], sync["done"], sync["bytes_found"], sync["bytes_done"]) == (30, 30, first, first)
    assert (st["crawl"]["initial_sync"]["files"], st["crawl"]["initial_sync"]["bytes"]) == (30, first), st["crawl"]
    assert st["agencies"]["alpha"]["files"] == 30, ("indexed files when the sync said complete", st)

    # a rescan (the unlock's reconcile) of 400 files written while locked, held back at the writer
    runtime = daemon.agencies.require("alpha")
    runtime.lock("test: files arrive while the watchers are off")
    total = write_files(root / "alpha" / "notes", "second", 400)
    gate = threading.Event()
    runtime.unlock("test: reconcile")
    wait_for(lambda: (daemon.pipeline.crawler.sync("alpha") or {}).get("found", 0) > 0, 20, 0.002, "walk started")
    daemon.pipeline.writer.submit(CallJob(fn=lambda conn: gate.wait(60)))
    try:
        # held: the writer waits, the indexers wait for it, the crawl waits for the queue
        held = wait_for(lambda: (s := call(root, "status"))["queue"]["depth"] >= HIGH_WATER and s, 20, 0.02,
                        "the queue fills up to the crawl's high water")
        sync = held["crawl"]["sync"]
        assert held["incomplete"] is True and held["agencies"]["alpha"]["incomplete"] is True
        assert (sync["kind"], sync["state"], sync["walk_done"]) == ("rescan", "walking", False)
        assert 0 < sync["done"] < sync["found"] < 400, sync
        assert 0 < sync["bytes_done"] < sync["bytes_found"] < total, sync
        assert sync["eta_s"] is None or sync["eta_s"] >= 0
        depth = held["queue"]["depth"]
        assert call(root, "status")["queue"]["depth"] == depth, "nothing moves while the writer is held"

        human = cli(root, "status", "--agency", "alpha")
        assert f"queue: {depth} changes waiting" in human.stdout, human.stdout
        assert "results incomplete" in human.stdout
        assert re.search(r"rescan: walking; \d+/\d+\+ files", human.stdout), human.stdout

        beta = call(root, "status", "beta")  # another agency: none of alpha's figures
        assert beta["incomplete"] is False and beta["queue"]["depth"] == 0 and beta["queue"]["in_flight"] == 0
        assert beta["crawl"]["sync"]["found"] == 0

        assert call(root, "search", query="second")["incomplete"] is True
        found = cli(root, "search", "--agency", "alpha", "second")
        assert "results may miss files" in found.stderr, found.stderr
    finally:
        gate.set()

    done = wait_for(lambda: (s := call(root, "status")) and not s["incomplete"] and s, 30, 0.02, "sync complete")
    sync = done["crawl"]["sync"]
    assert (sync["state"], sync["walk_done"], sync["eta_s"]) == ("done", True, 0.0)
    assert (sync["found"], sync["done"], sync["bytes_found"], sync["bytes_done"]) == (400, 400, total, total)
    assert done["agencies"]["alpha"]["files"] == 430
    assert done["queue"]["depth"] == 0
    assert call(root, "search", query="second")["incomplete"] is False
    assert "results incomplete" not in cli(root, "status", "--agency", "alpha").stdout


def test_latency_per_phase_and_index_size_on_disk(running: Daemon) -> None:
    daemon = running
    root: Path = daemon.data_root_for_test  # type: ignore[attr-defined]
    write_files(root / "alpha" / "notes", "crawled", 5)
    daemon.start()
    wait_for(lambda: not call(root, "status")["incomplete"], 20, 0.02, "initial sync")
    notes = root / "alpha" / "notes"
    for i in range(5):  # live edits, each waited for until searchable
        (notes / f"live{i}.md").write_text(f"edited zucchini{i}\n")
        wait_for(lambda i=i: call(root, "search", query=f"zucchini{i}")["hits"], 20, 0.02, f"live edit {i}")

    lat = call(root, "status")["latency"]
    assert lat["crawl"]["window"] == lat["crawl"]["count"] == 5
    assert lat["live"]["window"] == lat["live"]["count"] == 5
    for phase in ("crawl", "live"):
        assert 0 <= lat[phase]["p50_ms"] <= lat[phase]["p99_ms"], lat
    assert call(root, "status", "beta")["latency"]["live"] == {"count": 0, "window": 0}, "alpha's edits are alpha's"

    db = root / "kora_kernel.db"

    def on_disk() -> int:
        return sum(os.stat(p).st_size for p in (db, Path(f"{db}-wal")) if p.exists())

    def matches() -> dict[str, Any] | None:
        size = call(root, "status")["index_size"]
        return size if size["total"] == on_disk() else None

    size = wait_for(matches, 20, 0.05, "index size equals the files' sizes")
    assert size["total"] > 0 and size["database"] == os.stat(db).st_size
    assert "vectors" not in size
    # the shared files' size is for callers who can read them anyway (root, the daemon's user)
    assert full_status(daemon, "alpha", None)["index_size"] is None
    # so are the prep worker's figures (they count every agency's files)
    assert full_status(daemon, "alpha", None)["prep_worker"] is None
    worker = call(root, "status")["prep_worker"]
    assert set(worker) == {"mb", "starts", "crashes", "files", "files_here"} and worker["crashes"] == 0
    human = cli(root, "status")
    assert "index on disk:" in human.stdout and "shared by every agency" in human.stdout
    assert "queued → searchable: live p50" in human.stdout, human.stdout


def test_an_overflow_rescan_makes_results_incomplete_until_it_is_done(running: Daemon) -> None:
    daemon = running
    root: Path = daemon.data_root_for_test  # type: ignore[attr-defined]
    daemon.start()
    wait_for(lambda: not call(root, "status")["incomplete"], 20, 0.02, "initial sync (nothing to index)")
    assert call(root, "search", query="burst")["incomplete"] is False
    gate = threading.Event()
    daemon.pipeline.writer.submit(CallJob(fn=lambda conn: gate.wait(60)))
    try:
        # live changes while the writer is held: the writer's queue fills, then the work queue
        # (queue_max 40): changes are dropped and a rescan of the root is queued instead
        write_files(root / "alpha" / "notes", "burst", 200)
        wait_for(lambda: daemon.pipeline.work.overflow_rescans > 0, 20, 0.02, "the work queue overflows")
        st = call(root, "status")
        assert st["incomplete"] is True and call(root, "search", query="burst")["incomplete"] is True
        assert call(root, "status", "beta")["incomplete"] is False
    finally:
        gate.set()
    done = wait_for(lambda: (s := call(root, "status")) and not s["incomplete"] and s, 30, 0.02, "rescan complete")
    assert done["crawl"]["sync"]["kind"] == "rescan"
    wait_for(lambda: call(root, "status")["agencies"]["alpha"]["files"] == 200, 20, 0.02, "every file indexed")
