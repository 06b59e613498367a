"""Wall time of one CLI call (`koradaemon search` / `status`), hyperfine-style, beside the interpreter's own start.

Run: .venv/bin/python bench/bench_cli.py [--runs 40] [--files 300] [--cli-repo PATH] [--compare PATH]

A daemon runs on a throw-away data root holding a small corpus. The CLI runs the way a user's
installation runs it: a plain virtualenv (no editable-install import hooks) whose console script
`koradaemon` is the one current pip writes (``import sys; from koradaemon.cli import main``) and
imports the package from --cli-repo (default: this checkout) and the dependencies from this
environment; with --compare, a second venv runs the same calls from another checkout (an older
commit, e.g. from `git archive`) in the same round-robin; a second script is the one older pips wrote
(it imports ``re`` first). Each command runs --runs times after 3 warm-up runs, round-robin; the
table gives median, p90, the median's ratio to `python -c pass` in the same venv and run (the floor
of any Python CLI) and the median CPU time. Then the daemon's own share: the same requests sent
--runs times from this (already running) process, one fresh connection each, as a CLI call does.
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
import sys
from koradaemon.cli import main
if __name__ == '__main__':
    sys.argv[0] = sys.argv[0].removesuffix('.exe')
    sys.exit(main())
"""
OLD_PIP_SCRIPT = """#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from koradaemon.cli import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""


def plain_venv(base: Path, cli_repo: Path, name: str = "venv") -> Path:
    """A venv that sees the package and the deps as plain path entries, like a wheel install."""
    venv = base / name
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], check=True, capture_output=True, text=True).stdout.strip())
    deps = sysconfig.get_paths()["purelib"]
    (site / "kora.pth").write_text(f"{cli_repo}\n{deps}\n")
    for name, text in (("koradaemon", SCRIPT), ("koradaemon-oldpip", OLD_PIP_SCRIPT)):
        script = venv / "bin" / name
        script.write_text(text.format(python=venv / "bin" / "python"))
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


def daemon_request(d: LiveDaemon, op: str, extra: dict[str, object]) -> float:
    """Connect, send one request and read the reply with the CLI's own client, in this process."""
    from koradaemon.cli.wire import Wire

    token = d.token()
    t0 = time.perf_counter()
    with Wire(str(d.root / "run" / "koradaemon.sock")) as w:
        w.call(op, "bench", token, **extra)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--cli-repo", type=Path, default=REPO)
    ap.add_argument("--compare", type=Path, help="another checkout whose CLI runs the same calls in the same run")
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
        search = [*common, "search", "--agency", "bench", "sorrel"]
        cases = {
            "python -c pass (floor)": [py, "-c", "pass"],
            "koradaemon search": [kd, *search],
            "koradaemon status --agency": [kd, *common, "status", "--agency", "bench"],
            "koradaemon status": [kd, *common, "status"],
            "koradaemon status --json": [kd, *common, "status", "--json"],
            "koradaemon search (older pip script)": [str(venv / "bin" / "koradaemon-oldpip"), *search],
            "koradaemon --version (argparse)": [kd, "--version"],
        }
        if args.compare:
            other = str(plain_venv(base, args.compare.resolve(), "venv-compare") / "bin" / "koradaemon")
            cases |= {f"{args.compare.name}: search": [other, *search],
                      f"{args.compare.name}: status --agency": [other, *common, "status", "--agency", "bench"],
                      f"{args.compare.name}: status": [other, *common, "status"]}
        print(f"CLI wall time, {args.runs} runs each, CLI from {args.cli_repo}"
              + (f" and {args.compare}" if args.compare else "") + f", {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.2f}")
        results = timed(cases, args.runs, env)
        floor = statistics.median(w for w, _ in results["python -c pass (floor)"])
        print(f"{'command':38s} {'median ms':>10s} {'p90 ms':>8s} {'x floor':>8s} {'CPU ms':>8s}")
        for name, pairs in results.items():
            walls = sorted(w for w, _ in pairs)
            med, p90 = statistics.median(walls), walls[int(len(walls) * 0.9) - 1]
            cpu = statistics.median(c for _, c in pairs)
            print(f"{name:38s} {med * 1000:10.1f} {p90 * 1000:8.1f} {med / floor:8.2f} {cpu * 1000:8.1f}")
        print(f"the daemon's share: the same requests from this process, {args.runs} runs, one connection each")
        for op, extra in (("status", {}), ("search", {"query": "sorrel", "limit": 10})):
            walls = sorted(daemon_request(d, op, extra) for _ in range(args.runs))
            print(f"{op:38s} {statistics.median(walls) * 1000:10.2f} {walls[int(len(walls) * 0.9) - 1] * 1000:8.2f}")
        print(f"load after: {os.getloadavg()[0]:.2f}")
    finally:
        d.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
