"""Reconcile crawl: the changes that make the index of one root match the disk.

Stage one compares (size, mtime_ns) from the disk with the index's view (``known``): files new
or different → INDEX (bulk), indexed paths gone from disk or now ignored → DELETE (bulk).
Stage two, sha256, is the indexer's: it hashes every INDEX'd file and skips content it has.
A root that cannot be listed yields nothing, and paths below a directory that could not be
listed are not deleted: an unreadable or unmounted folder never empties the index.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import structlog

from .changes import ChangeKind, FileChange
from .crawl import CrawlStats, crawl
from .ignore import IgnoreRules
from .known import KnownFiles

log = structlog.get_logger(__name__)


def reconcile(
    agency_id: str,
    root: str,
    root_path: Path,
    rules: IgnoreRules,
    known: KnownFiles | dict[str, tuple[int, int]],
    stats: CrawlStats | None = None,
) -> Iterator[FileChange]:
    """Yield INDEX/DELETE changes (``bulk=True``) for root ``root`` of ``agency_id``.

    ``known``: the root's indexed files with their (size, mtime_ns); a dict is turned into a
    :class:`KnownFiles` first. Nothing is collected per file seen: what the crawl did not find
    is what is gone.
    """
    if isinstance(known, dict):
        known = KnownFiles.of(known)
    st = stats if stats is not None else CrawlStats()
    changed = 0
    for entry in crawl(root_path, rules, st):
        seen_as = known.take(entry.path)
        if seen_as != (entry.size, entry.mtime_ns):
            changed += 1
            yield FileChange(ChangeKind.INDEX, agency_id, root, entry.path, None, True, entry.size,
                             unindexed=seen_as is None)
    if "" in st.failed_dirs:
        log.error("reconcile_root_unreadable", agency_id=agency_id, root=root)
        return
    gone = 0
    for path in known.not_taken():
        if not _under_failed(path, st.failed_dirs):
            gone += 1
            yield FileChange(ChangeKind.DELETE, agency_id, root, path, None, True)
    log.info("reconcile_done", agency_id=agency_id, root=root, files=st.files, index=changed, delete=gone,
             errors=st.errors)


def _under_failed(path: str, failed: list[str]) -> bool:
    return any(path.startswith(d + "/") for d in failed)
