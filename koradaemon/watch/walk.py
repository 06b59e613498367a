"""The one directory walker: every folder below a root that the ignore rules do not exclude.

Depth first, never through a symlinked folder (no cycles, no escape). The caller gets each folder's
entries before its subfolders are chosen, so rules it learns from a folder (an ignore file found
there) already decide which subfolders are visited. Folders that cannot be listed are reported
through ``on_error`` and skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol


class DirFilter(Protocol):
    def is_ignored(self, path: str, is_dir: bool = ...) -> bool: ...


ErrorFn = Callable[[str, OSError], None]


def walk(root_path: Path | str, rules: DirFilter | None = None, *, on_error: ErrorFn | None = None,
         stopping: Callable[[], bool] | None = None) -> Iterator[tuple[str, list[os.DirEntry[str]]]]:
    """Yield ``(rel_dir, entries)`` for the root ("") and every folder below it that is not ignored."""
    root = os.fspath(root_path)
    ignored = rules.is_ignored if rules is not None else None
    stack = [""]
    while stack:
        if stopping is not None and stopping():
            return
        rel = stack.pop()
        try:
            with os.scandir(f"{root}/{rel}" if rel else root) as it:
                entries = list(it)
        except OSError as exc:
            if on_error is not None:
                on_error(rel, exc)
            continue
        yield rel, entries
        prefix = f"{rel}/" if rel else ""
        for entry in entries:
            try:
                if not entry.is_dir(follow_symlinks=False):
                    continue
            except OSError:
                continue
            child = prefix + entry.name
            if ignored is None or not ignored(child, True):
                stack.append(child)
