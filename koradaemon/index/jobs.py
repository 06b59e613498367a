"""Units of work handed from the indexer workers to the single writer thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .chunking import ChunkParams
from .rows import ChunkRow

FsPath = str | Path  # a plain string on the hot path: joining pathlib paths cost more than reading a small file


@dataclass
class IndexJob:
    agency_id: str
    root: str
    path: str
    abs_path: FsPath
    size: int
    mtime_ns: int
    sha256: str
    chunks: Iterable[ChunkRow]
    bulk: bool = False
    skipped: str | None = None
    nbytes: int = 0
    fresh: bool = False  # the indexer saw no row for this path (the writer inserts without a lookup)
    started: float = field(default_factory=time.monotonic)  # the indexer sets it to when the change was queued
    crawl: bool = False  # the change came from a crawl (status keeps crawl and live latency apart)


@dataclass
class ReadJob:
    """Read, hash and chunk the file ``root_path/path`` in the writer thread, inside its transaction.

    For small files: the hand-off of a prepared job and the document lookup on a second
    connection cost more than the reading itself, and two threads trading the GIL per file
    make both wait (see docs/performance.md).
    """

    agency_id: str
    root: str
    path: str
    root_path: str
    params: ChunkParams
    bulk: bool = False
    unindexed: bool = False  # the crawl saw no row for this path: no lookup before the INSERT
    started: float = field(default_factory=time.monotonic)  # when the change was queued
    crawl: bool = False  # the change came from a crawl (status keeps crawl and live latency apart)


@dataclass
class TouchJob:
    agency_id: str
    root: str
    path: str
    size: int
    mtime_ns: int
    bulk: bool = False


@dataclass
class DeleteJob:
    agency_id: str
    root: str
    path: str
    tree: bool = False
    bulk: bool = False


@dataclass
class MoveJob:
    agency_id: str
    root: str
    src: str
    dst: str
    tree: bool = False
    bulk: bool = False


@dataclass
class CallJob:
    """Run ``fn(conn)`` on the writer's connection (maintenance, barriers)."""

    fn: Callable[..., object]
    done: threading.Event = field(default_factory=threading.Event)
    bulk: bool = False


Job = IndexJob | ReadJob | TouchJob | DeleteJob | MoveJob | CallJob


class Applied(NamedTuple):
    """What a committed job did: its audit record (in the outbox, same transaction) and ``on_committed``."""

    agency_id: str
    type: str  # index | skip | delete | move | touch
    data: dict[str, object]
    started: float
    crawl: bool = False  # the change came from a crawl (status keeps crawl and live latency apart)


class SkipFile(Exception):
    """Raised while streaming chunks when a file turns out unusable (e.g. invalid UTF-8)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
