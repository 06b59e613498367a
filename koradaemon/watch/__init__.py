"""Watching agency roots: watchdog events → ignore rules → debounce → coalescing work queue.

Also the reconcile crawl that makes the index converge to the disk after downtime or a lost event.
"""

from __future__ import annotations

from .changes import ChangeKind, FileChange
from .workqueue import WorkQueue

__all__ = ["ChangeKind", "FileChange", "WorkQueue"]
