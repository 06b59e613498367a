"""Wall time of one CLI call (`koradaemon search` / `status`), hyperfine-style, beside the interpreter's own start.

Run: .venv/bin/python bench/bench_cli.py [--runs 40] [--files 300] [--cli-repo PATH]

A daemon runs on a throw-away data root holding a small corpus. The CLI runs the way a user's
installation runs it: a plain virtualenv (no editable-install import hooks) whose console script
`koradaemon` imports the package from --cli-repo (default: this checkout; point it at an older
checkout to compare) and the dependencies from this environment. Each command runs --runs times
after 3 warm-up runs; the table gives median, p90 and the median's ratio to `python -c pass` in
the same venv, measured in the same run (the floor of any Python CLI).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from daemon_proc import LiveDaemon

REPO = Path(__file__).resolve().parent.parent
SCRIPT = """#!{python}
import re
import sys
from koradaemon.cli import main
if __name__ == "__main__":
    sys.argv[0] = re.sub(r"(-script\\.pyw|\\.exe)?$", "", sys.argv[0])
    sys.exit(main())
"""


def plain_venv(base: Path, cli_repo: Path) -> Path:
    """A venv that sees the package and the deps as plain path entries, like a wheel install."""
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], check=True, capture_output=True, text=True).stdout.strip())
    deps = sysconfig.get_paths()["purelib"]
    (site / "kora.pth").write_text(f"{cli_repo}\n{deps}\n")
    script = venv / "bin" / "koradaemon"
    script.write_text(SCRIPT.format(python=venv / "bin" / "python"))
    script.chmod(0o755)
    return venv


def timed(cases: dict[str, list[str]], runs: int, env: dict[str, str]) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU user+sys) per run, round-robin over the cases (so a change in machine load hits them
    all alike), 3 warm-ups first. CPU time moves much less than wall time on a busy machine."""
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for i in range(runs + 3):
        for name, cmd in cases.items():
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            res = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
            wall = time.perf_counter() - t0
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            if i >= 3:
                out[name].append((wall, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime))
            if res.returncode != 0:
                raise SystemExit(f"{cmd} failed ({res.returncode}): {res.stderr.decode()[-500:]}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--cli-repo", type=Path, default=REPO)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="kora-bench-cli-"))
    d = LiveDaemon(base / "data")
    try:
        for i in range(args.files):
            (d.root / "corpus" / f"note{i:04d}.md").write_text(f"note {i}\n\nthe sorrel harvest of week {i % 52}\n")
        d.start()
        venv = plain_venv(base, args.cli_repo.resolve())
        py, kd = str(venv / "bin" / "python"), str(venv / "bin" / "koradaemon")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KORA_", "PYTHON"))}
        common = ["-c", str(d.config), "--data-root", str(d.root)]
        cases = {
            "python -c pass (floor)": [py, "-c", "pass"],
            "python -c 'import json, socket'": [py, "-c", "import json, socket"],
            "koradaemon search": [kd, *common, "search", "--agency", "bench", "sorrel"],
            "koradaemon status --agency": [kd, *common, "status", "--agency", "bench"],
            "koradaemon status": [kd, *common, "status"],
            "koradaemon --version": [kd, "--version"],
        }
        print(f"CLI wall time, {args.runs} runs each, CLI from {args.cli_repo}, {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.2f}")
        results = timed(cases, args.runs, env)
        floor = statistics.median(w for w, _ in results["python -c pass (floor)"])
        print(f"{'command':34s} {'median ms':>10s} {'p90 ms':>8s} {'x floor':>8s} {'CPU ms':>8s}")
        for name, pairs in results.items():
            walls = sorted(w for w, _ in pairs)
            med, p90 = statistics.median(walls), walls[int(len(walls) * 0.9) - 1]
            cpu = statistics.median(c for _, c in pairs)
            print(f"{name:34s} {med * 1000:10.1f} {p90 * 1000:8.1f} {med / floor:8.2f} {cpu * 1000:8.1f}")
    finally:
        d.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
