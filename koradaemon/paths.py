"""Validation of relative paths: the one place that says what a safe path is."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from .errors import PathError

AGENCY_ID_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def check_relative(value: str, *, what: str = "path") -> PurePosixPath:
    """Return ``value`` as a normalised relative POSIX path, refusing absolute paths, ``..`` and NUL."""
    if not isinstance(value, str) or not value:
        raise PathError(f"{what}: must be a non-empty relative path")
    if "\x00" in value:
        raise PathError(f"{what}: contains a NUL byte")
    if value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", value):
        raise PathError(f"{what}: {value!r} is absolute", hint="paths are relative to the data root")
    parts = [p for p in value.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise PathError(f"{what}: {value!r} contains '..'", hint="paths may not leave their root")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def resolve_under(root: Path, rel: str, *, what: str = "path") -> Path:
    """Join ``rel`` to ``root`` and make sure the result (symlinks resolved) stays under ``root``."""
    clean = check_relative(rel, what=what)
    candidate = root / clean
    real_root = os.path.realpath(root)
    real = os.path.realpath(candidate)
    if real != real_root and not real.startswith(real_root + os.sep):
        raise PathError(f"{what}: {rel!r} escapes its root through a symlink")
    return candidate


def check_agency_id(value: str) -> str:
    if not isinstance(value, str) or not AGENCY_ID_RE.match(value):
        raise PathError(
            f"agency_id {value!r} is invalid",
            hint="use 1-63 characters: lowercase letters, digits, '_' or '-', starting with a letter",
        )
    return value
