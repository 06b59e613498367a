"""Start a koradaemon subprocess on a throw-away data root for the live benchmarks."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from koradaemon.control.client import ControlClient

CONFIG = """\
version: 1
log: {{level: warning, format: json}}
index: {{workers: 1, prep_process: {prep}}}
watch: {{debounce_ms: {debounce}, queue_max: 200000}}
vault: {{enabled: false}}
agencies:
  - agency_id: bench
    roots: [corpus]
"""


class LiveDaemon:
    def __init__(self, root: Path, debounce_ms: int = 20, *, prep_process: bool = True) -> None:
        self.root = root
        (root / "corpus").mkdir(parents=True, exist_ok=True)
        self.config = root / "koradaemon.yaml"
        self.config.write_text(CONFIG.format(debounce=debounce_ms, prep="true" if prep_process else "false"))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "koradaemon", "-c", str(self.config), "--data-root", str(self.root), "run"]
        log = open(self.root / "daemon.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=dict(os.environ))
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"daemon exited: {(self.root / 'daemon.log').read_text()[-3000:]}")
            st = self.status()
            if st and st.get("ready") and st["queue"]["idle"]:
                return time.perf_counter() - t0
            time.sleep(0.25)

    def token(self) -> str:
        return (self.root / "run" / "tokens" / "bench.token").read_text().strip()

    def client(self) -> ControlClient:
        return ControlClient(self.root / "run" / "koradaemon.sock", timeout=30)

    def status(self) -> dict[str, Any] | None:
        try:
            with self.client() as c:
                return c.call("status", "bench", self.token())
        except Exception:
            return None

    def idle(self) -> bool:
        st = self.status()
        return bool(st and st["queue"]["idle"])

    def rss_mb(self) -> float:
        import psutil

        assert self.proc is not None
        return float(psutil.Process(self.proc.pid).memory_info().rss / 1e6)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)


class Sampler:
    """While in its ``with``, every 50 ms from a thread: the daemon's peak RSS (MB), its child
    processes' (the prep worker's) peak RSS (MB) and CPU seconds per child."""

    def __init__(self, d: LiveDaemon) -> None:
        self.d = d
        self.peak = 0.0
        self.child_peak = 0.0
        self.child_cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        while self.d.proc is None and not self._stop.is_set():
            time.sleep(0.005)
        while not self._stop.wait(0.05):
            if self.d.proc is None:
                continue
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(self.d.proc.pid)
                self.peak = max(self.peak, proc.memory_info().rss / 1e6)
                for child in proc.children():
                    self.child_peak = max(self.child_peak, child.memory_info().rss / 1e6)
                    t = child.cpu_times()
                    self.child_cpu[child.pid] = t.user + t.system
