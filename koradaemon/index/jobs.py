"""Units of work handed from the indexer workers to the single writer thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .store import ChunkRow

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


Job = IndexJob | TouchJob | DeleteJob | MoveJob | CallJob
