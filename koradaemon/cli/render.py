"""Rendering a command's result for people (or as JSON) and choosing the exit code."""

from __future__ import annotations

import os
import sys

from . import jsonlite
from .text import escape

TYPE_CHECKING = False  # typing is not imported at run time: this module is on every CLI call
if TYPE_CHECKING:
    import argparse
    from typing import Any

EX_OK, EX_DATAERR, EX_UNAVAILABLE, EX_TEMPFAIL, EX_NOPERM = 0, 65, 69, 75, 77


def emit(text: str) -> None:
    """Print ``text``; a reader that went away (``| head``) ends the output quietly, not the exit code."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        quiet_stdout()


def print_json(obj: Any) -> None:
    emit(jsonlite.dumps(obj, indent=2, sort_keys=True))


def status_health(st: dict[str, Any], *, online: bool) -> tuple[str, int]:
    """The status health check: (word, exit code). 0 only when running, ready and every agency ok."""
    agencies = st.get("agencies", {}) or {}
    if not online:
        return "not running", EX_UNAVAILABLE
    if st.get("lockdowns") or any(a.get("locked") for a in agencies.values()):
        return "lockdown", EX_NOPERM
    if not st.get("ready"):
        return "starting", EX_TEMPFAIL
    agent_state = (st.get("agent") or {}).get("state")
    if agent_state in ("degraded", "crash_loop", "failed") or st.get("stalled") or any(
            a.get("degraded_roots") or a.get("polling") for a in agencies.values()):
        return "degraded", EX_TEMPFAIL
    return "ok", EX_OK


def render(args: argparse.Namespace, out: dict[str, Any]) -> int:
    op, result, agency = out["op"], out["result"], out["agency"]
    code = EX_OK
    if op == "status":
        health, code = status_health(result, online=out["online"])
        result = {**result, "running": bool(out["online"]), "health": health}
    elif op == "audit.verify":
        items = result.values() if agency is None else [result]
        code = EX_OK if all(r.get("ok") for r in items) else EX_DATAERR
    if getattr(args, "json", False):
        print_json(result)
        return code
    if op == "search" and result.get("incomplete"):  # the --json form has the field itself
        print("note: the index is still syncing (start-up crawl or rescan): results may miss files; "
              "'koradaemon status' shows the progress", file=sys.stderr, flush=True)
    emit(_human(op, args, result, agency, out["online"]))
    return code


def _human(op: str, args: argparse.Namespace, result: dict[str, Any], agency: str | None, online: bool) -> str:
    if op == "search":
        from .render_search import render_search, use_color

        return render_search(result, offset=args.offset, color=use_color(args.color))
    if op == "status":
        from .render_status import render_status

        return render_status(result, online=online) + f"\nhealth: {result['health']}"
    if op == "audit.verify":
        from ..audit.report import format_verify_result
        from ..audit.verify import VerifyResult

        items = result.values() if agency is None else [result]
        return "\n".join(format_verify_result(VerifyResult(**r)) for r in items)
    if op == "audit.unlock":
        return render_unlock(result)
    if op == "files":
        return render_files(result)
    if op == "show":
        return render_show(result)
    if op == "snapshots":
        snaps = result.get("snapshots", [])
        rows = [f"{s.get('id')}  {s.get('trigger', '')}  {s.get('created', '')}" for s in snaps]
        return "\n".join(rows) if rows else "no snapshots"
    return jsonlite.dumps(result, indent=2, sort_keys=True)


def render_unlock(r: dict[str, Any]) -> str:
    lines = [f"unlocked agency {r.get('unlocked')} (unlock record seq {r.get('seq')})"]
    moved = r.get("quarantined") or []
    where = r.get("audit_dir", "")
    if moved:
        count = r.get("quarantined_records")
        first = r.get("first_bad_seq")
        rng = f"seq {first}..{first + count - 1}" if isinstance(first, int) and isinstance(count, int) and count else \
            f"from seq {first}"
        lines.append(f"quarantined {count if count is not None else '?'} record line(s) ({rng}) from "
                     f"{len(moved)} segment file(s), moved under {escape(str(where))}:")
        lines += [f"  {escape(str(m))}" for m in moved]
        lines.append(f"  reason: {escape(str(r.get('bad_reason', '')))}")
    else:
        lines.append(f"nothing quarantined: the log in {escape(str(where))} verifies")
    lines.append(f"chain continues from seq {r.get('last_good_seq')} (lockdown was: "
                 f"{escape(str(r.get('lockdown_reason', '')))})")
    return "\n".join(lines)


def render_files(r: dict[str, Any]) -> str:
    files = r.get("files", [])
    lines = []
    for f in files:
        path = escape(f"{f.get('root')}/{f.get('path')}")
        if r.get("skipped"):
            lines.append(f"{escape(str(f.get('skipped'))):<16} {f.get('size', 0):>12}  {path}")
        else:
            lines.append(f"{f.get('size', 0):>12} {f.get('chunks', 0):>6}  {f.get('indexed_at', '')}  {path}")
    what = "skipped files" if r.get("skipped") else "indexed files"
    first = r.get("offset", 0) + 1
    tail = f"{what}: {r.get('total', len(files))}" + (
        f" (showing {first}-{first + len(files) - 1})" if files and len(files) < r.get("total", 0) else "")
    header = ["reason                   size  path" if r.get("skipped") else
              "        size chunks  indexed               path"]
    return "\n".join([*(header if files else []), *lines, tail])


def render_show(r: dict[str, Any]) -> str:
    text = str(r.get("text", ""))
    if r.get("kind") != "lines":
        return text.rstrip("\n")
    start = int(r.get("line_start", 1))
    rows = text.splitlines()
    width = len(str(start + len(rows)))
    return "\n".join(f"{n:>{width}}│ {line}" for n, line in enumerate(rows, start))


def quiet_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush stays silent."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):
        pass
