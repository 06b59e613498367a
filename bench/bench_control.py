"""Control socket under pressure: `status` round trips alone, then beside a crowd of idle connections.

Run: .venv/bin/python bench/bench_control.py [--idle 200] [--calls 200]

* alone: p50/p99 of `status` through the control socket, one fresh connection per call (as the
  CLI does), nothing else connected.
* crowd: the same while ``--idle`` connections that never send a byte are held open and reopened
  at once whenever the daemon closes one (the worst case for the pre-auth pool).
Printed as ratios crowd/alone, with how many crowd connections the daemon evicted meanwhile.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import tempfile
import threading
import time
from pathlib import Path

from daemon_proc import LiveDaemon


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))] * 1000


def connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(os.fspath(path))
    return s


def hold(path: Path, n: int, stop: threading.Event, reopened: list[int]) -> None:
    socks = [connect(path) for _ in range(n)]
    try:
        while not stop.is_set():
            readable, _, _ = select.select(socks, [], [], 0.1)
            for s in readable:
                socks.remove(s)
                s.close()
                socks.append(connect(path))
                reopened[0] += 1
    finally:
        for s in socks:
            s.close()


def status_times(d: LiveDaemon, calls: int) -> list[float]:
    token = d.token()
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        with d.client() as c:
            c.call("status", "bench", token)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--idle", type=int, default=200)
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = LiveDaemon(Path(tmp))
        d.start()
        try:
            alone = status_times(d, args.calls)
            stop, reopened = threading.Event(), [0]
            crowd = threading.Thread(target=hold, args=(d.root / "run" / "koradaemon.sock", args.idle, stop, reopened))
            crowd.start()
            try:
                busy = status_times(d, args.calls)
            finally:
                stop.set()
                crowd.join(30)
        finally:
            d.stop()
    a50, a99, b50, b99 = pct(alone, 0.5), pct(alone, 0.99), pct(busy, 0.5), pct(busy, 0.99)
    print(f"status alone:            p50 {a50:7.2f} ms  p99 {a99:7.2f} ms")
    print(f"status, {args.idle} idle conns: p50 {b50:7.2f} ms  p99 {b99:7.2f} ms  max {max(busy) * 1000:7.2f} ms")
    print(f"ratio crowd/alone:       p50 {b50 / a50:5.2f}x   p99 {b99 / a99:5.2f}x   "
          f"(crowd connections evicted and reopened: {reopened[0]})")


if __name__ == "__main__":
    main()
