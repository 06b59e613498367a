"""One agency's sync as ``status`` and ``search`` report it: progress, rate, ETA, and whether results
may still miss files.

A sync is the start-up crawl (``initial``) or a later one (``rescan``: after a queue overflow, an
unlock, a reload that changed the roots). It is complete when every walk of the agency is over,
none of the changes they queued is still queued or being read (nor a rescan request), and the writer
has committed every job handed to it up to that moment. Until then ``incomplete`` is true: a search
may miss files the walk found or has not reached yet.

``found`` grows while the walk runs (it streams: it stops while the queue is full), so the ETA is a
lower bound until ``walk_done``. ``done`` counts the files read and handed to the writer; they are
searchable once the writer commits them (a batch: at most half a second, see writer.py).
Nothing here costs anything per change: figures are derived when asked.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

import structlog

log = structlog.get_logger(__name__)


class _Crawler(Protocol):
    def agencies(self) -> list[str]: ...
    def sync(self, agency_id: str) -> dict[str, Any] | None: ...


class _Work(Protocol):
    overflow_rescans: int

    def pending(self, agency_id: str) -> dict[str, int]: ...
    def crawl_pending(self, agency_id: str) -> bool: ...


class _Writer(Protocol):
    submitted: int
    finished: int
    last_commit: float | None


class SyncTracker:
    def __init__(self, crawler: _Crawler, work: _Work, writer: _Writer) -> None:
        self.crawler = crawler
        self.work = work
        self.writer = writer
        self._lock = threading.Lock()
        self._marks: dict[str, tuple[float, int]] = {}  # agency -> (its sync's start, writer jobs to wait for)
        # agency -> (its sync's start, when it was complete, the queue's overflow count then)
        self._ended: dict[str, tuple[float, float, int]] = {}
        self._initial: dict[str, dict[str, Any]] = {}  # agency -> its initial sync's totals

    def initial(self, agency_id: str) -> dict[str, Any] | None:
        """The agency's initial sync once complete (as last seen by :meth:`state`): ``files``, ``bytes``,
        ``seconds``, ``mb_per_s``."""
        return self._initial.get(agency_id)

    def poll(self) -> None:
        """From the daemon's main loop: look at every sync not seen complete yet, so that the moment
        its last change reached the writer is taken soon after it happened (a late first look waits
        for other agencies' jobs too: never wrong, only slower to say complete)."""
        for agency_id in self.crawler.agencies():
            sync = self.crawler.sync(agency_id)
            ended = self._ended.get(agency_id)
            if sync is not None and (ended is None or ended[0] != sync["started"]
                                     or ended[2] != self.work.overflow_rescans):
                try:
                    self.state(agency_id)
                except Exception:  # the main loop goes on: status computes the same again when asked
                    log.exception("sync_state_failed", agency_id=agency_id)

    def incomplete(self, agency_id: str) -> bool:
        """:meth:`state`'s ``incomplete`` for ``search``: without a pass over the whole queue (it stops at
        the agency's first crawl change), and none at all once the sync is complete."""
        sync = self.crawler.sync(agency_id)
        if sync is None:
            return False
        ended = self._ended.get(agency_id)
        if ended is not None and ended[0] == sync["started"] and ended[2] == self.work.overflow_rescans:
            return False
        if sync["walked"] is None or self.work.crawl_pending(agency_id):
            return True
        return bool(self.state(agency_id)["incomplete"])  # the writer's share: decided (and noted) there

    def state(self, agency_id: str) -> dict[str, Any]:
        sync = self.crawler.sync(agency_id)
        if sync is None:
            return {"kind": None, "state": "none", "incomplete": False, "walk_done": True}
        started: float = sync["started"]
        walking = sync["walked"] is None
        ended = self._ended.get(agency_id)
        if ended is not None and ended[0] == started and ended[2] == self.work.overflow_rescans:
            # complete, and no change was dropped since: nothing of this sync can be pending (no queue pass)
            return self._figures(agency_id, sync, _NOTHING, waiting=False, end=ended[1])
        pending = self.work.pending(agency_id)
        overflows = self.work.overflow_rescans
        with self._lock:
            if walking or pending["crawl"] or pending["rescans"]:
                self._marks.pop(agency_id, None)
                waiting = True
            elif not sync["found"] and not sync["deletes"]:
                waiting = False  # the walk queued nothing: nothing to wait for
            else:
                mark = self._marks.get(agency_id)
                if mark is None or mark[0] != started:  # every job of this sync is with the writer by now
                    mark = self._marks[agency_id] = (started, self.writer.submitted)
                waiting = self.writer.finished < mark[1]
            end = None
            if not waiting:
                ended = self._ended.get(agency_id)
                if ended is not None and ended[0] == started:
                    end = ended[1]
                else:
                    end = min(time.monotonic(), max(sync["walked"], self.writer.last_commit or 0.0))
                self._ended[agency_id] = (started, end, overflows)
        return self._figures(agency_id, sync, pending, waiting=waiting, end=end)

    def _figures(self, agency_id: str, sync: dict[str, Any], pending: dict[str, int], *, waiting: bool,
                 end: float | None) -> dict[str, Any]:
        walking = sync["walked"] is None
        found, found_bytes = sync["found"], sync["found_bytes"]
        done = max(0, found - pending["crawl_files"])
        done_bytes = max(0, found_bytes - pending["crawl_bytes"])
        seconds = max(1e-6, (end if end is not None else time.monotonic()) - sync["started"])
        out = {"kind": sync["kind"], "incomplete": waiting, "walk_done": not walking,
               "state": "walking" if walking else "indexing" if pending["crawl"] or pending["rescans"]
               else "committing" if waiting else "done",
               "found": found, "done": done, "bytes_found": found_bytes, "bytes_done": done_bytes,
               "deletes": sync["deletes"], "seconds": round(seconds, 3),
               "files_per_s": round(done / seconds, 1), "mb_per_s": round(done_bytes / 1e6 / seconds, 2),
               "eta_s": 0.0 if not waiting else _eta(found - done, found_bytes - done_bytes, done, done_bytes,
                                                     seconds)}
        if not waiting and sync["kind"] == "initial" and agency_id not in self._initial:
            self._initial[agency_id] = {"files": found, "bytes": found_bytes, "seconds": out["seconds"],
                                        "mb_per_s": out["mb_per_s"]}
        return out


_NOTHING = {"queued": 0, "in_flight": 0, "crawl": 0, "crawl_files": 0, "crawl_bytes": 0, "rescans": 0}


def _eta(files_left: int, bytes_left: int, files_done: int, bytes_done: int, seconds: float) -> float | None:
    """Seconds left at the rate so far (by bytes, or by files when they are empty); None: no rate yet."""
    if bytes_done > 0 and bytes_left > 0:
        return round(bytes_left / (bytes_done / seconds), 1)
    if files_done > 0:
        return round(max(0, files_left) / (files_done / seconds), 1)
    return None
