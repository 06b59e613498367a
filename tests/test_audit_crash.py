"""kill -9 while appending never yields a false tamper, and every acknowledged record survives."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from koradaemon.audit.anchor import AnchorStore
from koradaemon.audit.verify import verify_log
from koradaemon.audit.writer import AuditLog

CHILD = r"""
import sys
from pathlib import Path
import structlog
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
from koradaemon.audit.anchor import AnchorStore
from koradaemon.audit.writer import AuditLog

root = Path(sys.argv[1])
alog = AuditLog(root / "a", "a", AnchorStore(root / "kora_kernel.db"), segment_max_bytes=8192)
alog.open()
i = 0
while True:
    burst = [alog.append_nowait("index", {"path": f"f{i}-{k}.md", "pad": "x" * (i % 50)}) for k in range(i % 40)]
    rec = alog.append("delete", {"i": i})
    acked = [p.result().seq for p in burst] + [rec.seq]
    sys.stdout.write(" ".join(map(str, acked)) + "\n")
    sys.stdout.flush()
    i += 1
"""


def run_and_kill(root: Path, after_lines: int) -> int:
    """Start the appender, kill -9 it after ``after_lines`` acknowledgement lines; return the max acked seq."""
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get(
        "PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(root)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    top = -1
    try:
        for _ in range(after_lines):
            line = proc.stdout.readline()
            if not line:
                break
            top = max(top, *map(int, line.split()))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert top >= 0, "the child acknowledged nothing"
    return top


@pytest.mark.parametrize("round_", range(4))
def test_kill_9_during_appends_never_looks_like_tampering(tmp_path: Path, round_: int) -> None:
    rng = random.Random(round_)
    acked = -1
    for _ in range(2):  # crash twice on the same log: recovery after recovery
        acked = max(acked, run_and_kill(tmp_path, rng.randint(3, 60)))
        anchors = AnchorStore(tmp_path / "kora_kernel.db")
        try:
            alog = AuditLog(tmp_path / "a", "a", anchors)
            opened = alog.open()  # must not raise TamperError
            assert opened.head.seq >= acked
            alog.close()
            result = verify_log(tmp_path / "a", "a", anchor=anchors.load("a"))
        finally:
            anchors.close()
        assert result.ok, result
        assert result.head_seq is not None and result.head_seq >= acked
