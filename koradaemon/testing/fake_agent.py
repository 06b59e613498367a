"""A small stand-in for the OpenClaw gateway, for tests: ``python -m koradaemon.testing.fake_agent``.

It speaks the same probes (``/healthz``, ``/startupz``, ``/readyz`` on 127.0.0.1) and signals:

* reads ``OPENCLAW_STATE_DIR``; ``state.json`` there must be valid (``{"version": 1, ...}``) or the
  agent exits 78 (EX_CONFIG), like a gateway refusing unusable state; a missing file is created;
* writes ``state.json`` (boot count, pid), ``env.json`` (its environment) and, with
  ``--spawn-grandchild``, ``grandchild.pid``;
* SIGTERM/SIGINT: clean exit 0 (unless ``--ignore-term``); SIGUSR1: hang (probes stop answering,
  the process keeps running);
* a ``mode`` file in the state directory switches behaviour at run time and is consumed:
  ``crash`` (exit 3), ``hang``, ``exit78``, ``corrupt`` (garble state.json, then crash); ``notready``
  (``/readyz`` answers 503) stays in force while the file exists (write it atomically: temp + rename);
* ``--crash-after S`` exits with ``--crash-code`` after S seconds; ``--ready-after S`` delays readiness;
* ``--report-access PATH`` (repeatable) writes ``access.json``: its uid/gid/HOME, whether each PATH can be
  read, the sha256 of the token it was given (env and file), and what the control socket answers to a
  ``status`` request for its own agency and (``--other-agency``) for another one with the same token.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

EX_CONFIG = 78
STATE_FILE = "state.json"


class Agent:
    def __init__(self, args: argparse.Namespace, state_dir: Path) -> None:
        self.args = args
        self.state_dir = state_dir
        self.stop = threading.Event()
        self.hung = threading.Event()
        self.started = time.monotonic()
        self.not_ready = False
        self.slow_loop = False

    def ready(self) -> bool:
        return not self.not_ready and time.monotonic() - self.started >= self.args.ready_after

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGUSR1:
            self.hung.set()
        else:
            self.stop.set()


def make_handler(agent: Agent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if agent.hung.is_set():
                agent.stop.wait()  # never answer while hung; ends when the process is told to stop
                return
            if self.path == "/healthz":
                self._reply(200, {"ok": True, "status": "live"})
            elif self.path in ("/readyz", "/startupz"):
                ok = agent.ready()
                loop = {"degraded": agent.slow_loop, "reasons": ["event_loop_delay"] if agent.slow_loop else []}
                self._reply(200 if ok else 503, {"ready": ok, "failing": [], "eventLoop": loop})
            else:
                self._reply(404, {"error": "not found"})

        def _reply(self, code: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


def load_state(state_dir: Path) -> dict[str, object]:
    """Validate the state file; exit 78 if it is unusable."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return {"version": 1, "boots": 0}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(state, dict) or state.get("version") != 1:
            raise ValueError("unsupported state version")
    except ValueError as exc:
        print(f"fake-agent: unusable state {path.name}: {exc}", file=sys.stderr, flush=True)
        sys.exit(EX_CONFIG)
    return state


def write_json(path: Path, obj: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def spawn_grandchild(state_dir: Path) -> None:
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(60)\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    (state_dir / "grandchild.pid").write_text(str(proc.pid), encoding="utf-8")


def _try_read(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        return type(exc).__name__
    return "read"


def _control_status(agency: str) -> str:
    """Ask the daemon's control socket for ``agency``'s status with the token this agent was given."""
    import socket

    request = {"id": 1, "op": "status", "agency_id": agency, "token": os.environ.get("KORA_TOKEN", "none")}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(os.environ.get("KORA_SOCKET", ""))
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        reply = json.loads(data)
    except (OSError, ValueError) as exc:
        return type(exc).__name__
    return "ok" if reply.get("ok") else str(reply.get("error", {}).get("code"))


def _sha(text: str) -> str:
    return hashlib.sha256(text.strip().encode()).hexdigest() if text.strip() else ""


def access_report(paths: list[str], other_agency: str) -> dict[str, object]:
    token_file = os.environ.get("KORA_TOKEN_FILE", "")
    try:
        file_token = Path(token_file).read_text(encoding="utf-8") if token_file else ""
    except OSError:
        file_token = ""
    agency = os.environ.get("KORA_AGENCY", "")
    return {
        "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "home": os.environ.get("HOME"),
        "reads": {p: _try_read(p) for p in paths},
        "token_env_sha256": _sha(os.environ.get("KORA_TOKEN", "")), "token_file_sha256": _sha(file_token),
        "control_own": _control_status(agency) if agency else "no agency",
        "control_other": _control_status(other_agency) if other_agency else "",
    }


def spawn_detached(state_dir: Path) -> None:
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(60)\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    (state_dir / "detached.pid").write_text(str(proc.pid), encoding="utf-8")


def check_mode(agent: Agent) -> int | None:
    """Apply the ``mode`` file; returns an exit code when the agent should exit now."""
    path = agent.state_dir / "mode"
    try:
        mode = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        agent.not_ready = agent.slow_loop = False
        return None
    if not mode:  # being written, or cleared
        agent.not_ready = agent.slow_loop = False
        return None
    agent.not_ready = mode == "notready"
    agent.slow_loop = mode == "slowloop"
    if mode not in ("notready", "slowloop"):
        path.unlink(missing_ok=True)  # one-shot: the restarted agent runs normally
    if mode == "breaker":
        print("[gateway] channel autostart suppressed by crash-loop breaker; refusing automatic start for demo",
              flush=True)
    elif mode == "breaker-recovered":
        print("[gateway] restart-loop breaker recovered; starting deferred channels", flush=True)
    if mode == "hang":
        agent.hung.set()
    elif mode == "crash":
        return 3
    elif mode == "exit78":
        return EX_CONFIG
    elif mode == "corrupt":
        (agent.state_dir / STATE_FILE).write_text("{corrupt", encoding="utf-8")
        return 3
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="fake_agent", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--port", type=int, default=int(os.environ.get("FAKE_AGENT_PORT", "0")))
    p.add_argument("--ready-after", type=float, default=0.0)
    p.add_argument("--crash-after", type=float, default=None)
    p.add_argument("--crash-code", type=int, default=3)
    p.add_argument("--spawn-grandchild", action="store_true")
    p.add_argument("--spawn-detached", action="store_true")
    p.add_argument("--ignore-term", action="store_true")
    p.add_argument("--report-access", action="append", default=[], metavar="PATH")
    p.add_argument("--other-agency", default="")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state_env = os.environ.get("OPENCLAW_STATE_DIR")
    if not state_env:
        print("fake-agent: OPENCLAW_STATE_DIR is not set", file=sys.stderr, flush=True)
        return EX_CONFIG
    state_dir = Path(state_env)
    state_dir.mkdir(parents=True, exist_ok=True)
    state = load_state(state_dir)
    agent = Agent(args, state_dir)
    signal.signal(signal.SIGUSR1, agent.on_signal)
    signal.signal(signal.SIGINT, agent.on_signal)
    signal.signal(signal.SIGTERM, signal.SIG_IGN if args.ignore_term else agent.on_signal)
    boots = state.get("boots", 0)
    state.update(boots=(boots if isinstance(boots, int) else 0) + 1, pid=os.getpid(), clean_shutdown=False)
    write_json(state_dir / STATE_FILE, state)
    write_json(state_dir / "env.json", dict(os.environ))
    if args.spawn_grandchild:
        spawn_grandchild(state_dir)
    if args.spawn_detached:
        spawn_detached(state_dir)
    if args.report_access:
        write_json(state_dir / "access.json", access_report(args.report_access, args.other_agency))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(agent))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    print(f"fake-agent: listening on 127.0.0.1:{server.server_address[1]} pid={os.getpid()}", flush=True)
    code = run_loop(agent)
    server.shutdown()
    server.server_close()
    if code == 0:
        state.update(clean_shutdown=True)
        write_json(state_dir / STATE_FILE, state)
        print("fake-agent: clean shutdown", flush=True)
    return code


def run_loop(agent: Agent) -> int:
    while not agent.stop.wait(0.02):
        code = check_mode(agent)
        if code is not None:
            print(f"fake-agent: exiting with {code}", file=sys.stderr, flush=True)
            return code
        if agent.args.crash_after is not None and time.monotonic() - agent.started >= agent.args.crash_after:
            print("fake-agent: crashing as told", file=sys.stderr, flush=True)
            return int(agent.args.crash_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
