"""Log rotation by size, retention by age, no line lost under load, and `koradaemon logs`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import DaemonProc, wait_for

from koradaemon.logfile import RotatingLogFile, rotated_files

LOAD_SCRIPT = """
import os, sys, threading
from pathlib import Path
import structlog
from koradaemon.logsetup import configure_logging
configure_logging(level="info", fmt="json", file=Path(sys.argv[1]), stream=open(os.devnull, "w"),
                  rotate_mb=0.01, keep_days=1)
log = structlog.get_logger("load")
def work(t):
    for i in range(int(sys.argv[3])):
        log.info("load_line", thread=t, i=i, pad="x" * (i % 50))
threads = [threading.Thread(target=work, args=(t,)) for t in range(int(sys.argv[2]))]
for th in threads: th.start()
for th in threads: th.join()
"""


def all_lines(path: Path) -> list[str]:
    out: list[str] = []
    for f in [*rotated_files(path), path]:
        out += f.read_text().splitlines()
    return out


def test_rotation_never_loses_or_splits_a_line_under_load(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "koradaemon.log"
    threads, per_thread = 8, 1500
    subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(path), str(threads), str(per_thread)], check=True,
                   timeout=300)
    rotated = rotated_files(path)
    assert len(rotated) >= 10, "the load must cross many rotations"
    seen = [json.loads(line) for line in all_lines(path)]  # every line whole JSON
    keys = [(e["thread"], e["i"]) for e in seen if e.get("event") == "load_line"]
    assert len(keys) == threads * per_thread
    assert set(keys) == {(t, i) for t in range(threads) for i in range(per_thread)}
    for f in rotated:  # each file stays near the limit: rotation happens at the first line boundary past it
        assert f.stat().st_size < 10 * 1024 * 1.2 + 1024
    for t in range(threads):  # and one thread's lines keep their order across files
        mine = [i for (tt, i) in keys if tt == t]
        assert mine == sorted(mine)


def test_retention_deletes_only_old_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "k.log"
    old = tmp_path / "k.log.20200101T000000.000000Z"
    recent = tmp_path / "k.log.20990101T000000.000000Z"
    unrelated = tmp_path / "k.log.keep-me"
    for f in (old, recent, unrelated):
        f.write_text("x\n")
    three_days_ago = time.time() - 3 * 86_400
    os.utime(old, (three_days_ago, three_days_ago))
    sink = RotatingLogFile(path, max_bytes=100, keep_days=1)
    try:
        assert not old.exists() and recent.exists() and unrelated.exists()
        for i in range(10):
            sink.write(json.dumps({"i": i, "pad": "y" * 40}) + "\n")
        assert sink.rotations >= 3
        assert len(rotated_files(path)) == sink.rotations + 1  # + the recent one
    finally:
        sink.close()


def test_partial_writes_are_joined_into_one_line(tmp_path: Path) -> None:
    path = tmp_path / "k.log"
    sink = RotatingLogFile(path, max_bytes=10, keep_days=1)
    sink.write('{"a": 1')
    sink.write("}")
    sink.write("\n")
    sink.close()
    assert all_lines(path) == ['{"a": 1}']


def _write_set(path: Path) -> list[dict[str, object]]:
    sink = RotatingLogFile(path, max_bytes=200, keep_days=1)
    events: list[dict[str, object]] = []
    for i in range(30):
        ev = {"event": "e", "i": i, "agency_id": "alpha" if i % 3 else "beta"}
        events.append(ev)
        sink.write(json.dumps(ev) + "\n")
    sink.write("not json\n")
    sink.close()
    return events


def test_logs_command_reads_rotated_files_in_order_and_filters(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path)
    events = _write_set(tmp_path / "logs" / "koradaemon.log")
    assert len(rotated_files(tmp_path / "logs" / "koradaemon.log")) >= 3
    res = d.cli("logs", "--agency", "alpha", check=True)
    got = [json.loads(line) for line in res.stdout.splitlines()]
    assert got == [e for e in events if e["agency_id"] == "alpha"]
    everything = d.cli("logs", check=True).stdout.splitlines()
    assert len(everything) == 31 and everything[-1] == "not json"
    last = d.cli("logs", "-n", "2", "--agency", "beta", check=True).stdout.splitlines()
    assert [json.loads(x)["i"] for x in last] == [24, 27]
    bad = d.cli("logs", "--agency", "gamma")
    assert bad.returncode == 64 and "unknown agency" in bad.stderr


def test_logs_follow_carries_on_across_rotation(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path)
    path = tmp_path / "logs" / "koradaemon.log"
    sink = RotatingLogFile(path, max_bytes=300, keep_days=1)
    sink.write(json.dumps({"event": "before", "agency_id": "alpha"}) + "\n")
    cmd = [sys.executable, "-m", "koradaemon", "-c", str(d.config), "--data-root", str(tmp_path),
           "logs", "--follow", "--agency", "alpha"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=d.env)
    got: list[dict[str, object]] = []
    reader = threading.Thread(target=lambda: got.extend(json.loads(line) for line in proc.stdout or ()), daemon=True)
    reader.start()
    try:
        wait_for(lambda: got, 30, 0.05, "the existing line")
        for i in range(40):
            sink.write(json.dumps({"event": "live", "i": i, "agency_id": "alpha" if i % 2 else "beta"}) + "\n")
        assert sink.rotations >= 3
        wait_for(lambda: len(got) >= 21, 30, 0.05, "every followed line")
        assert [e.get("i") for e in got] == [None, *range(1, 40, 2)]
    finally:
        sink.close()
        proc.kill()
        proc.wait()
        reader.join(10)
        if proc.stdout is not None:
            proc.stdout.close()
