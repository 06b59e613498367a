"""Walk one watched root: regular files with size and mtime, honouring the ignore rules.

Symlinked directories are never followed (no cycles, no escape). A symlinked file is listed
(under its own path, with the link's own size and mtime) only when its target is a regular file
inside the root; the indexer records it as skipped (``symlink``) and never reads through it.
Other non-regular files are skipped. Directories that cannot be listed
(permission denied, vanished meanwhile) are logged, counted and skipped.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from .ignore import IgnoreRules

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CrawlEntry:
    path: str  # POSIX, relative to the root
    size: int
    mtime_ns: int


@dataclass
class CrawlStats:
    files: int = 0
    dirs: int = 0
    skipped: int = 0
    errors: int = 0
    failed_dirs: list[str] = field(default_factory=list)  # "" = the root itself


def crawl(root_path: Path, rules: IgnoreRules, stats: CrawlStats | None = None) -> Iterator[CrawlEntry]:
    """Yield every indexable file below ``root_path`` (depth first, in no particular order)."""
    st = stats if stats is not None else CrawlStats()
    real_root = os.path.realpath(root_path)
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(os.path.join(root_path, rel)) as it:
                entries = list(it)
        except OSError as exc:
            st.errors += 1
            st.failed_dirs.append(rel)
            log.warning("crawl_dir_failed", root=str(root_path), dir=rel or ".", error=exc.strerror)
            continue
        st.dirs += 1
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            found = _entry(entry, child, rules, real_root, stack, st)
            if found is not None:
                st.files += 1
                yield found


def _entry(
    entry: os.DirEntry[str], rel: str, rules: IgnoreRules, real_root: str, stack: list[str], st: CrawlStats
) -> CrawlEntry | None:
    try:
        if entry.is_dir(follow_symlinks=False):
            if not rules.is_ignored(rel, True):
                stack.append(rel)
            return None
        if rules.is_ignored(rel):
            return None
        link = entry.is_symlink()
        if link and not inside(entry.path, real_root):
            st.skipped += 1
            return None
        info = entry.stat(follow_symlinks=True)
        if link and stat.S_ISREG(info.st_mode):
            # The indexer never reads through a link (it records it as skipped, from the link's own
            # lstat): list it with the same figures, so a restart does not see it as changed.
            info = entry.stat(follow_symlinks=False)
            return CrawlEntry(rel, info.st_size, info.st_mtime_ns)
    except OSError:  # vanished or unreadable meanwhile
        st.skipped += 1
        return None
    if not stat.S_ISREG(info.st_mode):
        st.skipped += 1
        return None
    return CrawlEntry(rel, info.st_size, info.st_mtime_ns)


def inside(path: str, real_root: str) -> bool:
    """True when ``path`` (after resolving symlinks) lies inside ``real_root`` (already resolved)."""
    target = os.path.realpath(path)
    return target.startswith(real_root.rstrip("/") + "/")
