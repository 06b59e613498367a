"""Record of the running agent's process group, so a restarted daemon can end a stale one.

The file holds JSON ``{"pid", "pgid", "create_time", "argv0"}``. A stale group is only signalled
when psutil confirms the recorded leader still has the recorded creation time, or, when the leader
is gone, for members of that group created after it; a recycled pid is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import structlog

log = structlog.get_logger(__name__)

_CREATE_TIME_SLACK_S = 0.05


@dataclass(frozen=True)
class GroupRecord:
    pid: int
    pgid: int
    create_time: float
    argv0: str


def write_record(path: Path, record: GroupRecord) -> None:
    """Atomically write ``record`` to ``path`` (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(record)), encoding="utf-8")
    os.replace(tmp, path)


def read_record(path: Path) -> GroupRecord | None:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return GroupRecord(int(raw["pid"]), int(raw["pgid"]), float(raw["create_time"]), str(raw["argv0"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("agent_pidfile_unreadable", path=str(path), error=str(exc))
        return None


def remove_record(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def group_members(record: GroupRecord) -> list[psutil.Process]:
    """Live processes that belong to the recorded group (not zombies)."""
    members: list[psutil.Process] = []
    for proc in psutil.process_iter(["create_time", "status"]):
        try:
            if os.getpgid(proc.pid) != record.pgid:
                continue
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.info["create_time"] + _CREATE_TIME_SLACK_S < record.create_time:
                continue
            if proc.pid == record.pid and abs(proc.info["create_time"] - record.create_time) > _CREATE_TIME_SLACK_S:
                continue
            members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def reap_stale(path: Path, *, drain_s: float) -> int:
    """End the process group recorded in ``path`` if it is still alive; returns how many were ended.

    SIGTERM to the group, up to ``drain_s`` for it to go, then SIGKILL. The record is removed.
    """
    record = read_record(path)
    if record is None:
        return 0
    members = group_members(record)
    if members:
        log.warning("agent_stale_group", pgid=record.pgid, pid=record.pid, members=[p.pid for p in members])
        _signal_group(record.pgid, signal.SIGTERM)
        alive = wait_gone(members, drain_s)
        if alive:
            _signal_group(record.pgid, signal.SIGKILL)
            wait_gone(alive, 5.0)
        log.info("agent_stale_group_ended", pgid=record.pgid, killed=len(alive))
    remove_record(path)
    return len(members)


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited (zombies count: their parent is no longer us); return the rest.

    Not ``psutil.wait_procs``: for a process that is not our child it waits while a zombie remains.
    """
    deadline = time.monotonic() + timeout
    alive = list(procs)
    while True:
        alive = [p for p in alive if _running(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
