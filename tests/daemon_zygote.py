"""A pre-imported koradaemon that forks real daemon processes on request, for a test that starts and
kills -9 a daemon many times: each forked daemon runs ``koradaemon ... run`` (the CLI's own main) in a
process of its own, without the interpreter's start-up and imports (about a second each).

One JSON request per line on stdin, one JSON answer per line on stdout:
  {"run": [argv...], "log": path, "env": {...}}  ->  {"pid": n}
  {"poll": pid}                                   ->  {"status": waitpid status, or null while running}
The zygote never runs the daemon itself: every fork starts from the state the imports left.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback

from koradaemon.cli.main import main as cli_main

# what `koradaemon run` imports on its way to the daemon
for _name in ("koradaemon.cli.locate", "koradaemon.cli.parser", "koradaemon.daemon.runner",
              "koradaemon.daemon.signals"):
    importlib.import_module(_name)


def _child(req: dict[str, object]) -> None:
    code = 70
    try:
        fd = os.open(str(req["log"]), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        env = req["env"]
        assert isinstance(env, dict)
        os.environ.clear()
        os.environ.update(env)
        argv = [str(a) for a in req["run"]]  # type: ignore[attr-defined]
        sys.argv = ["koradaemon", *argv]
        code = cli_main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 70
    except BaseException:  # a forked child must never return into the zygote's loop
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    for line in sys.stdin:
        req = json.loads(line)
        if "run" in req:
            pid = os.fork()
            if pid == 0:
                _child(req)
            answer: dict[str, object] = {"pid": pid}
        else:
            pid, status = os.waitpid(int(req["poll"]), os.WNOHANG)
            answer = {"status": status if pid else None}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
