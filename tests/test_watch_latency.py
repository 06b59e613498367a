"""Close → queue latency of the watch path (the part of close → searchable the watcher adds).

Run ``.venv/bin/pytest -s tests/test_watch_latency.py`` to print the figures. The assertion
is loose (shared CI machines); the target is overhead p50 ≤ 2 ms, p99 ≤ 20 ms beyond the
close delay.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from koradaemon.watch.changes import ChangeKind
from koradaemon.watch.driver import WatchDriver
from koradaemon.watch.ignore import IgnoreRules
from koradaemon.watch.workqueue import WorkQueue

N = 200
DEBOUNCE = 0.05


def test_close_to_queue_latency(tmp_path: Path) -> None:
    queue = WorkQueue()
    driver = WatchDriver(agency_id="a1", root="r", root_path=tmp_path, rules=IgnoreRules.for_root(tmp_path),
                         queue=queue, debounce_s=DEBOUNCE)
    driver.start()
    delay = driver.debouncer.close_delay_s
    overhead: list[float] = []
    try:
        for i in range(N):
            fd = os.open(tmp_path / f"f{i}.md", os.O_CREAT | os.O_WRONLY, 0o644)
            os.write(fd, b"hello %d\n" % i)
            t_close = time.perf_counter()
            os.close(fd)
            change = queue.get(timeout=5)
            t_got = time.perf_counter()
            assert change is not None and change.kind is ChangeKind.INDEX and change.path == f"f{i}.md"
            queue.task_done()
            overhead.append((t_got - t_close - delay) * 1000)
    finally:
        driver.stop()
    q = statistics.quantiles(overhead, n=100)
    p50, p99 = statistics.median(overhead), q[98]
    print(f"\nclose→queue over {N} files: close delay {delay * 1000:.1f} ms (debounce {DEBOUNCE * 1000:.0f} ms); "
          f"overhead beyond it p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(overhead):.2f} ms")
    assert p50 < 10 and p99 < 200
