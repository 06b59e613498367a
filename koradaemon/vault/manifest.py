"""manifest.json of a snapshot, snapshot ids, and the SnapshotInfo handed to callers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import SnapshotError

MANIFEST = "manifest.json"
FORMAT = "KV-1"
MANIFEST_VERSION = 1
STATE_MEMBER = "daemon-state"
SNAP_ID_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{6}Z)(?:-(\d{1,6}))?$")
MEMBER_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
TRIGGER_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def snap_id_base(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H%M%SZ")


def check_snap_id(snap_id: str) -> str:
    if not isinstance(snap_id, str) or not SNAP_ID_RE.match(snap_id):
        raise SnapshotError(f"snapshot id {snap_id!r} is invalid", hint="expected YYYY-MM-DDTHHMMSSZ[-N]")
    return snap_id


def snap_sort_key(snap_id: str) -> tuple[int, str]:
    """Creation order: by the per-agency counter N, then the stamp (ids of older versions have no N)."""
    m = SNAP_ID_RE.match(snap_id)
    if m is None:
        return (-1, snap_id)
    return (int(m.group(2) or 0), m.group(1))


def check_member(name: str) -> str:
    if not MEMBER_RE.match(name) or name == STATE_MEMBER:
        raise SnapshotError(f"snapshot member name {name!r} is invalid",
                            hint=f"use [a-z0-9_.-], up to 64 characters, not {STATE_MEMBER!r}")
    return name


def member_file(member: str) -> str:
    return f"{member}.kv1"


def aad_name(snap_id: str, member: str) -> str:
    """The KV-1 ``name`` of a member file: binds it to its snapshot and its file name."""
    return f"{snap_id}/{member_file(member)}"


@dataclass(frozen=True)
class MemberInfo:
    file: str
    sha256: str
    bytes: int
    kind: str  # "tar" (a folder tree) or "json" (the daemon's own state)


@dataclass(frozen=True)
class SnapshotInfo:
    id: str
    agency_id: str
    created: str
    trigger: str
    members: dict[str, MemberInfo] = field(default_factory=dict)
    path: Path | None = None
    agent: dict[str, Any] | None = None  # the agent's health when taken (its agency only)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "agency": self.agency_id, "created": self.created, "trigger": self.trigger,
                "members": sorted(m for m in self.members if m != STATE_MEMBER),
                "bytes": sum(m.bytes for m in self.members.values()),
                **({"agent_good": bool(self.agent.get("good"))} if self.agent is not None else {})}

    def manifest(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": MANIFEST_VERSION, "id": self.id, "agency": self.agency_id,
                "created": self.created, "trigger": self.trigger,
                "members": {k: vars(v) for k, v in sorted(self.members.items())},
                **({"agent": self.agent} if self.agent is not None else {})}

    def manifest_bytes(self) -> bytes:
        return (json.dumps(self.manifest(), sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


def read_manifest(snap_dir: Path, agency_id: str) -> SnapshotInfo:
    """Load and check ``manifest.json``: it must name this agency and this folder's id."""
    try:
        doc = json.loads((snap_dir / MANIFEST).read_bytes())
        members = {str(k): MemberInfo(file=str(v["file"]), sha256=str(v["sha256"]), bytes=int(v["bytes"]),
                                      kind=str(v["kind"])) for k, v in doc["members"].items()}
        agent = doc.get("agent")
        info = SnapshotInfo(id=str(doc["id"]), agency_id=str(doc["agency"]), created=str(doc["created"]),
                            trigger=str(doc["trigger"]), members=members, path=snap_dir,
                            agent=dict(agent) if isinstance(agent, dict) else None)
        ok = doc["format"] == FORMAT and doc["version"] == MANIFEST_VERSION
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SnapshotError(f"snapshot {snap_dir.name!r}: unreadable manifest ({exc.__class__.__name__})") from None
    if not ok or info.id != snap_dir.name or info.agency_id != agency_id:
        raise SnapshotError(f"snapshot {snap_dir.name!r}: manifest does not match its agency/folder")
    for name, m in members.items():
        if m.file != member_file(name) or (name != STATE_MEMBER and not MEMBER_RE.match(name)):
            raise SnapshotError(f"snapshot {snap_dir.name!r}: bad member entry {name!r}")
    return info
