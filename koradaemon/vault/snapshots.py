"""Snapshots: encrypted copies of an agency's state folders, written atomically, kept N deep.

Layout: ``<root>/<agency>/YYYY-MM-DDTHHMMSSZ-N/`` (N: a per-agency counter that only grows)
holding ``manifest.json``, one
``<member>.kv1`` per source folder (a tar stream, KV-1 encrypted) and ``daemon-state.kv1``
(the daemon's state for the restore, encrypted). See docs/vault-format.md.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import tarfile
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from ..errors import SnapshotError
from ..fsutil import atomic_write_bytes, dir_lock, fsync_dir, remove_tree
from ..paths import check_agency_id
from .keys import KeyHolder
from .kv1 import DecryptReader, EncryptWriter, encrypt_stream, fail
from .manifest import (
    MANIFEST,
    SNAP_ID_RE,
    STATE_MEMBER,
    TRIGGER_RE,
    MemberInfo,
    SnapshotInfo,
    aad_name,
    check_member,
    check_snap_id,
    member_file,
    read_manifest,
    snap_id_base,
    snap_sort_key,
)
from .packing import pack_dir, unpack_into
from .scheduler import SnapshotScheduler

__all__ = ["SnapshotInfo", "SnapshotScheduler", "SnapshotStore"]

log = structlog.get_logger(__name__)

AuditFn = Callable[[str, str, dict[str, object]], object]  # return value ignored
STALE_PREFIXES = (".tmp-", ".del-")
SEQ_FILE = ".seq"


class _Hashing:
    """A file wrapper hashing every byte that passes through (read or write)."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.sha, self.count = fh, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.count += len(data)
        return self.fh.write(data)

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.sha.update(data)
        self.count += len(data)
        return data


class SnapshotStore:
    def __init__(self, root: Path, *, keys: KeyHolder, keep_last: int, audit: AuditFn | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC), exclude: Sequence[str] = ()) -> None:
        if keep_last < 1:
            raise SnapshotError("keep_last must be at least 1")
        self.root, self.keys, self.keep_last, self.audit, self._now = root, keys, keep_last, audit, now
        self.exclude = tuple(exclude)  # globs left out of every folder member (caches, locks)
        self._mutex = threading.Lock()

    # -- create ---------------------------------------------------------------------------
    def create(self, agency_id: str, sources: Mapping[str, Path], trigger: str = "manual",
               extra_state: Mapping[str, object] | None = None,
               agent: Mapping[str, Any] | None = None) -> SnapshotInfo:
        """Snapshot each source folder of ``agency_id``; the new snapshot is complete or absent."""
        agency_dir = self._agency_dir(agency_id)
        if not TRIGGER_RE.match(trigger):
            raise SnapshotError(f"snapshot trigger {trigger!r} is invalid")
        for name, src in sources.items():
            check_member(name)
            if not src.is_dir() or src.is_symlink():
                raise SnapshotError(f"snapshot source {name!r} is not a folder")
        with self._mutex, dir_lock(agency_dir):
            self._clean_stale(agency_dir)
            stamp = self._now().astimezone(UTC)
            snap_id = self._new_id(agency_dir, stamp)
            created = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
            tmp = agency_dir / f".tmp-{snap_id}-{secrets.token_hex(4)}"
            tmp.mkdir(mode=0o700)
            try:
                members = {n: self._write_tree(tmp, agency_id, snap_id, n, s) for n, s in sources.items()}
                state = {"agency": agency_id, "snapshot": snap_id, "created": created, "trigger": trigger,
                         "members": {k: v.sha256 for k, v in sorted(members.items())},
                         "extra_state": dict(extra_state or {})}
                if agent is not None:  # authenticated copy; the manifest's is for listing
                    state["agent"] = dict(agent)
                members[STATE_MEMBER] = self._write_state(tmp, agency_id, snap_id, state)
                info = SnapshotInfo(snap_id, agency_id, created, trigger, members, agency_dir / snap_id,
                                    dict(agent) if agent is not None else None)
                atomic_write_bytes(tmp / MANIFEST, info.manifest_bytes())
                os.rename(tmp, agency_dir / snap_id)
                fsync_dir(agency_dir)
            except BaseException:
                remove_tree(tmp)
                raise
            # Retention only once the new snapshot is written AND audited: a failed audit (lockdown,
            # disk full) removes the new, unaudited snapshot and keeps every older one.
            doomed = self._doomed(agency_dir, keep=snap_id)
            try:
                self._audit(agency_id, "snapshot", {"snapshot": snap_id, "trigger": trigger,
                                                    "members": sorted(sources), "bytes": sum(
                                                        m.bytes for m in members.values()), "removed": doomed})
            except BaseException:
                self._remove(agency_dir, [snap_id])
                raise
            self._remove(agency_dir, doomed)
        log.info("snapshot_created", agency_id=agency_id, id=snap_id, trigger=trigger, removed=doomed)
        return info

    def _write_tree(self, tmp: Path, agency_id: str, snap_id: str, member: str, src: Path) -> MemberInfo:
        def body(out: _Hashing) -> None:
            w = self._writer(out, agency_id, aad_name(snap_id, member))
            pack_dir(src, w, exclude=self.exclude, scratch=tmp)  # SQLite files via the backup API
            w.finish()

        return self._write_member(tmp / member_file(member), "tar", body)

    def _write_state(self, tmp: Path, agency_id: str, snap_id: str, state: dict[str, Any]) -> MemberInfo:
        try:
            doc = json.dumps(state, sort_keys=True, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise SnapshotError(f"extra_state is not JSON-serialisable: {exc}") from None

        def body(out: _Hashing) -> None:
            encrypt_stream(io.BytesIO(doc), out, self.keys.file_key,
                           salt=self.keys.salt, iterations=self.keys.iterations, agency_id=agency_id,
                           name=aad_name(snap_id, STATE_MEMBER))

        return self._write_member(tmp / member_file(STATE_MEMBER), "json", body)

    def _writer(self, out: _Hashing, agency_id: str, name: str) -> EncryptWriter:
        return EncryptWriter(out, self.keys.file_key, salt=self.keys.salt,
                             iterations=self.keys.iterations, agency_id=agency_id, name=name)

    @staticmethod
    def _write_member(path: Path, kind: str, body: Callable[[_Hashing], None]) -> MemberInfo:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            out = _Hashing(fh)
            body(out)
            fh.flush()
            os.fsync(fh.fileno())
        return MemberInfo(file=path.name, sha256=out.sha.hexdigest(), bytes=out.count, kind=kind)

    @staticmethod
    def _new_id(agency_dir: Path, stamp: datetime) -> str:
        """``<UTC stamp>-<N>``: N is a per-agency counter that only grows (kept in ``.seq`` and never
        below any id present), so an id is never reused and ids sort in creation order."""
        counter = agency_dir / SEQ_FILE
        try:
            last = int(counter.read_text().strip() or 0)
        except (OSError, ValueError):
            last = 0
        present = [snap_sort_key(i)[0] for i in SnapshotStore._ids(agency_dir)]
        n = max([last, *present]) + 1
        atomic_write_bytes(counter, f"{n}\n".encode())
        return f"{snap_id_base(stamp)}-{n}"

    # -- housekeeping ---------------------------------------------------------------------
    def _agency_dir(self, agency_id: str) -> Path:
        return self.root / check_agency_id(agency_id)

    @staticmethod
    def _clean_stale(agency_dir: Path) -> None:
        for entry in agency_dir.iterdir():
            if entry.name.startswith(STALE_PREFIXES):
                log.warning("snapshot_stale_removed", name=entry.name)
                remove_tree(entry)

    @staticmethod
    def _ids(agency_dir: Path) -> list[str]:
        if not agency_dir.is_dir():
            return []
        ids = [e.name for e in agency_dir.iterdir() if SNAP_ID_RE.match(e.name) and e.is_dir()]
        return sorted(ids, key=snap_sort_key)

    def _doomed(self, agency_dir: Path, *, keep: str) -> list[str]:
        old = [i for i in self._ids(agency_dir) if i != keep]
        return old[: max(0, len(old) - (self.keep_last - 1))]

    @staticmethod
    def _remove(agency_dir: Path, ids: list[str]) -> None:
        for snap_id in ids:
            aside = agency_dir / f".del-{snap_id}"
            os.rename(agency_dir / snap_id, aside)
            remove_tree(aside)
        if ids:
            fsync_dir(agency_dir)

    def clean(self, agency_id: str) -> None:
        """Remove leftovers of an interrupted create (also done by every ``create``)."""
        agency_dir = self._agency_dir(agency_id)
        with self._mutex, dir_lock(agency_dir):
            self._clean_stale(agency_dir)

    # -- read -----------------------------------------------------------------------------
    def list(self, agency_id: str) -> list[SnapshotInfo]:
        """Snapshots of ``agency_id``, oldest first (folders with a bad manifest are logged and left out)."""
        agency_dir = self._agency_dir(agency_id)
        out = []
        for snap_id in self._ids(agency_dir):
            try:
                out.append(read_manifest(agency_dir / snap_id, agency_id))
            except SnapshotError as exc:
                log.warning("snapshot_unreadable", agency_id=agency_id, id=snap_id, error=exc.message)
        return out

    def latest(self, agency_id: str) -> SnapshotInfo | None:
        snaps = self.list(agency_id)
        return snaps[-1] if snaps else None

    def get(self, agency_id: str, snap_id: str) -> SnapshotInfo:
        snap_dir = self._agency_dir(agency_id) / check_snap_id(snap_id)
        if not snap_dir.is_dir():
            raise SnapshotError(f"agency {agency_id!r} has no snapshot {snap_id!r}")
        return read_manifest(snap_dir, agency_id)

    def _open_member(self, info: SnapshotInfo, member: str) -> tuple[_Hashing, DecryptReader, MemberInfo]:
        m = info.members.get(member)
        if m is None or info.path is None:
            raise SnapshotError(f"snapshot {info.id!r} has no member {member!r}")
        try:
            fh = open(info.path / m.file, "rb")  # noqa: SIM115 - closed by the caller
        except OSError as exc:
            raise SnapshotError(f"snapshot {info.id!r}: member {member!r} unreadable: {exc.strerror}") from None
        src = _Hashing(fh)
        try:
            reader = DecryptReader(src, self.keys.file_key,
                                   agency_id=info.agency_id, name=aad_name(info.id, member))
        except BaseException:
            fh.close()
            raise
        return src, reader, m

    @staticmethod
    def _check_hash(src: _Hashing, m: MemberInfo) -> None:
        if src.fh.read(1) or src.sha.hexdigest() != m.sha256:
            raise fail("member hash differs from manifest")

    def verify(self, agency_id: str, snap_id: str) -> SnapshotInfo:
        """Decrypt every member end to end and cross-check the manifest with the encrypted state."""
        info = self.get(agency_id, snap_id)
        for member in info.members:
            src, reader, m = self._open_member(info, member)
            with src.fh:
                data = reader.read() if member == STATE_MEMBER else b""
                reader.drain()
                self._check_hash(src, m)
            if member == STATE_MEMBER:
                self._check_state(info, data)
        return info

    @staticmethod
    def _check_state(info: SnapshotInfo, data: bytes) -> None:
        try:
            state = json.loads(data)
        except ValueError:
            raise fail("daemon state is not JSON") from None
        expect = {k: v.sha256 for k, v in info.members.items() if k != STATE_MEMBER}
        seen = (state.get("snapshot"), state.get("agency"), state.get("trigger"), state.get("members"))
        if seen != (info.id, info.agency_id, info.trigger, expect):
            raise fail("manifest differs from the encrypted daemon state")

    def read_state(self, agency_id: str, snap_id: str) -> dict[str, Any]:
        """The daemon state stored with a snapshot (``extra_state`` as given to ``create``)."""
        return dict(self._read_state_doc(agency_id, snap_id)["extra_state"])

    def agent_health(self, agency_id: str, snap_id: str) -> dict[str, Any] | None:
        """The agent's health recorded (encrypted, authenticated) with a snapshot; None if none was."""
        agent = self._read_state_doc(agency_id, snap_id).get("agent")
        return dict(agent) if isinstance(agent, dict) else None

    def _read_state_doc(self, agency_id: str, snap_id: str) -> dict[str, Any]:
        info = self.get(agency_id, snap_id)
        src, reader, m = self._open_member(info, STATE_MEMBER)
        with src.fh:
            data = reader.read()
            self._check_hash(src, m)
        self._check_state(info, data)
        return dict(json.loads(data))

    # -- restore --------------------------------------------------------------------------
    def restore(self, agency_id: str, snap_id: str, member: str, target: Path, *, in_place: bool) -> dict[str, Any]:
        """Put one member folder back at ``target``: fully decrypted and checked first, then swapped in.

        ``in_place=True`` replaces an existing ``target`` (the agent must be stopped);
        ``in_place=False`` requires ``target`` to be absent or an empty folder.
        """
        info = self.get(agency_id, snap_id)
        if member == STATE_MEMBER or member not in info.members:
            raise SnapshotError(f"snapshot {snap_id!r} has no folder member {member!r}")
        if target.is_symlink():
            raise SnapshotError("restore target is a symlink")
        if not in_place and target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise SnapshotError("restore target exists and is not empty", hint="pick a new folder")
        with self._mutex, dir_lock(self._agency_dir(agency_id)):  # retention cannot remove it meanwhile
            target.parent.mkdir(parents=True, exist_ok=True)
            _recover_aside(target)
            staged = target.parent / f".{target.name}.restore-{secrets.token_hex(4)}"
            staged.mkdir(mode=0o700)
            try:
                counts = self._unpack(info, member, staged)
                if target.is_dir():
                    os.chmod(staged, target.stat().st_mode & 0o7777)  # the folder keeps its mode
                backup = _swap_in(staged, target, stamp=self._now().astimezone(UTC))
            except BaseException:
                remove_tree(staged)
                raise
            pruned = _prune_backups(target, keep=self.keep_last)
        log.info("snapshot_restored", agency_id=agency_id, id=snap_id, member=member, in_place=in_place,
                 backup=backup.name if backup else None, **counts)
        data: dict[str, object] = {"snapshot": snap_id, "member": member, "in_place": in_place,
                                   "target": target.name, "files": counts["files"], "bytes": counts["bytes"],
                                   "backup": backup.name if backup else None, "pruned_backups": pruned}
        self._audit(agency_id, "restore", data)
        return {"snapshot": snap_id, "member": member, **counts, "backup": str(backup) if backup else None,
                "backups": [str(b) for b in list_backups(target)]}

    def _unpack(self, info: SnapshotInfo, member: str, staged: Path) -> dict[str, int]:
        src, reader, m = self._open_member(info, member)
        with src.fh:
            try:
                counts = unpack_into(reader, staged)
            except tarfile.TarError as exc:
                raise SnapshotError(f"snapshot {info.id!r}: member {member!r} is not a valid archive: {exc}") from None
            except OSError as exc:
                raise SnapshotError(f"restore of {member!r} failed: {exc.strerror or exc}") from None
            reader.drain()
            self._check_hash(src, m)
        return counts

    def _audit(self, agency_id: str, record_type: str, data: dict[str, object]) -> None:
        if self.audit is not None:
            self.audit(agency_id, record_type, data)


BACKUP_MARK = ".before-restore-"


def _swap_in(staged: Path, target: Path, *, stamp: datetime) -> Path | None:
    """Rename ``target`` aside, ``staged`` into place, then keep the replaced tree as a dated backup
    beside it (``.<name>.before-restore-<UTC stamp>-<hex>``); returns the backup's path."""
    aside = None
    if target.exists():
        aside = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
        os.rename(target, aside)
    try:
        os.rename(staged, target)
    except OSError:
        if aside is not None:
            os.rename(aside, target)
        raise
    backup = None
    if aside is not None:
        backup = target.parent / f".{target.name}{BACKUP_MARK}{stamp:%Y-%m-%dT%H%M%SZ}-{secrets.token_hex(2)}"
        os.rename(aside, backup)
    fsync_dir(target.parent)
    return backup


def list_backups(target: Path) -> list[Path]:
    """The dated backups of ``target`` left by in-place restores, oldest first."""
    prefix = f".{target.name}{BACKUP_MARK}"
    if not target.parent.is_dir():
        return []
    return sorted(e for e in target.parent.iterdir() if e.name.startswith(prefix) and e.is_dir())


def _prune_backups(target: Path, *, keep: int) -> list[str]:
    doomed = list_backups(target)[: max(0, len(list_backups(target)) - keep)]
    for path in doomed:
        remove_tree(path)
    return [p.name for p in doomed]


def _recover_aside(target: Path) -> None:
    """After a crash between the renames of ``_swap_in``: put the old tree back, or keep it as a
    backup when the restored tree is already in place; drop half-unpacked leftovers."""
    prefix = f".{target.name}."
    for entry in sorted(target.parent.iterdir()):
        if not entry.name.startswith(prefix):
            continue
        if entry.name.startswith(prefix + "old-"):
            if not target.exists():
                log.warning("restore_recovered_aside", target=target.name)
                os.rename(entry, target)
            else:
                os.rename(entry, target.parent / f".{target.name}{BACKUP_MARK}recovered-{secrets.token_hex(2)}")
        elif entry.name.startswith(prefix + "restore-"):
            remove_tree(entry)
