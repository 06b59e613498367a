"""Snapshots: create, list, retention, restore (in place / into a folder), tamper and misplacement."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from koradaemon.errors import SnapshotError, VaultError
from koradaemon.vault.keys import KeyHolder
from koradaemon.vault.kv1 import DECRYPT_FAILED
from koradaemon.vault.snapshots import SnapshotStore


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyHolder]:
    pw = tmp_path_factory.mktemp("secret") / "pass"
    pw.write_bytes(b"correct horse battery staple\n")
    pw.chmod(0o600)
    holder = KeyHolder(pw, idle_lock_s=3600)
    holder.unlock()
    yield holder
    holder.lock()


class Tick:
    """A wall clock that advances one second per call (distinct snapshot ids without waiting)."""

    def __init__(self, start: datetime | None = None, step: float = 1.0) -> None:
        self.t = start or datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        self.step = step

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=self.step)
        return self.t


class Audit:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, object]]] = []

    def __call__(self, agency: str, kind: str, data: dict[str, object]) -> None:
        self.records.append((agency, kind, data))


def make_tree(root: Path) -> Path:
    (root / "sessions" / "deep").mkdir(parents=True)
    (root / "sessions" / "s1.json").write_text('{"turn": 1}')
    (root / "sessions" / "deep" / "blob.bin").write_bytes(os.urandom(200_000))
    (root / "empty.txt").write_bytes(b"")
    (root / "emptydir").mkdir()
    (root / "ro.txt").write_text("read only")
    (root / "ro.txt").chmod(0o400)
    return root


def tree(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        out[p.relative_to(root).as_posix()] = p.read_bytes() if p.is_file() else None
    return out


@pytest.fixture
def store(tmp_path: Path, keys: KeyHolder) -> SnapshotStore:
    return SnapshotStore(tmp_path / "snapshots", keys=keys, keep_last=3, audit=Audit(), now=Tick())


def audit_of(store: SnapshotStore) -> Audit:
    assert isinstance(store.audit, Audit)
    return store.audit


def test_create_layout_manifest_and_audit(tmp_path: Path, store: SnapshotStore) -> None:
    src = make_tree(tmp_path / "state")
    info = store.create("alpha", {"state0": src}, "signal", {"state_dirs": ["alpha/state"]})
    snap = tmp_path / "snapshots" / "alpha" / info.id
    assert info.id == "2026-01-02T030406Z-1"
    assert sorted(p.name for p in snap.iterdir()) == ["daemon-state.kv1", "manifest.json", "state0.kv1"]
    man = json.loads((snap / "manifest.json").read_text())
    assert man["version"] == 1 and man["agency"] == "alpha" and man["trigger"] == "signal"
    assert man["created"] == "2026-01-02T03:04:06Z" and set(man["members"]) == {"state0", "daemon-state"}
    assert b"turn" not in (snap / "state0.kv1").read_bytes()
    assert store.read_state("alpha", info.id) == {"state_dirs": ["alpha/state"]}
    assert store.verify("alpha", info.id).id == info.id
    assert audit_of(store).records[-1][:2] == ("alpha", "snapshot")
    assert audit_of(store).records[-1][2]["snapshot"] == info.id
    assert info.to_dict()["members"] == ["state0"]


def test_restore_into_target_round_trip(tmp_path: Path, store: SnapshotStore) -> None:
    src = make_tree(tmp_path / "state")
    info = store.create("alpha", {"state0": src}, "manual")
    out = tmp_path / "restored" / "state0"
    res = store.restore("alpha", info.id, "state0", out, in_place=False)
    assert tree(out) == tree(src) and res["files"] == 4
    assert (out / "ro.txt").stat().st_mode & 0o777 == 0o400
    assert audit_of(store).records[-1][1] == "restore"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_restore_empty_folder(tmp_path: Path, store: SnapshotStore) -> None:
    src = tmp_path / "empty"
    src.mkdir()
    info = store.create("alpha", {"state0": src}, "manual")
    out = tmp_path / "out"
    store.restore("alpha", info.id, "state0", out, in_place=False)
    assert out.is_dir() and tree(out) == {}


def test_restore_in_place_replaces_state(tmp_path: Path, store: SnapshotStore) -> None:
    src = make_tree(tmp_path / "state")
    before = tree(src)
    info = store.create("alpha", {"state0": src}, "manual")
    (src / "sessions" / "s1.json").write_text("broken")
    (src / "new-junk").write_text("junk")
    src.chmod(0o750)
    replaced = tree(src)
    result = store.restore("alpha", info.id, "state0", src, in_place=True)
    assert tree(src) == before
    assert src.stat().st_mode & 0o777 == 0o750, "the folder keeps its mode"
    backups = [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert len(backups) == 1 and backups[0].name.startswith(".state.before-restore-2026-")
    assert tree(backups[0]) == replaced, "what the restore replaced is kept beside it"
    assert result["backup"] == str(backups[0])


def test_restore_backups_are_pruned_to_keep_last(tmp_path: Path, store: SnapshotStore) -> None:
    src = make_tree(tmp_path / "state")
    info = store.create("alpha", {"state0": src}, "manual")
    for i in range(5):
        (src / "gen").write_text(str(i))
        store.restore("alpha", info.id, "state0", src, in_place=True)
    backups = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".state.before-restore-"))
    assert len(backups) == 3  # the store's keep_last
    assert (tmp_path / backups[-1] / "gen").read_text() == "4"


def test_restore_into_non_empty_target_refused(tmp_path: Path, store: SnapshotStore) -> None:
    info = store.create("alpha", {"state0": make_tree(tmp_path / "state")}, "manual")
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep").write_text("mine")
    with pytest.raises(SnapshotError, match="not empty"):
        store.restore("alpha", info.id, "state0", other, in_place=False)
    assert (other / "keep").read_text() == "mine"


def test_corrupted_member_restores_nothing(tmp_path: Path, store: SnapshotStore) -> None:
    src = make_tree(tmp_path / "state")
    info = store.create("alpha", {"state0": src}, "manual")
    before = tree(src)
    (src / "marker").write_text("current")
    member = tmp_path / "snapshots" / "alpha" / info.id / "state0.kv1"
    data = bytearray(member.read_bytes())
    data[-100] ^= 1  # inside the final chunk: the tar data was already mostly unpacked
    member.write_bytes(bytes(data))
    with pytest.raises(VaultError) as err:
        store.restore("alpha", info.id, "state0", src, in_place=True)
    assert str(err.value) == DECRYPT_FAILED
    assert tree(src) == {**before, "marker": b"current"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with pytest.raises(VaultError):
        store.verify("alpha", info.id)
    assert audit_of(store).records[-1][1] == "snapshot"


def test_wrong_passphrase_same_error(tmp_path: Path, store: SnapshotStore) -> None:
    info = store.create("alpha", {"state0": make_tree(tmp_path / "state")}, "manual")
    pw = tmp_path / "wrong"
    pw.write_bytes(b"wrong horse\n")
    pw.chmod(0o600)
    other = SnapshotStore(store.root, keys=KeyHolder(pw, idle_lock_s=60), keep_last=3)
    for call in (lambda: other.verify("alpha", info.id),
                 lambda: other.restore("alpha", info.id, "state0", tmp_path / "out", in_place=False)):
        with pytest.raises(VaultError) as err:
            call()
        assert str(err.value) == DECRYPT_FAILED
    assert not (tmp_path / "out").exists()


def test_member_moved_to_other_agency_or_renamed_fails(tmp_path: Path, store: SnapshotStore) -> None:
    a = store.create("alpha", {"state0": make_tree(tmp_path / "state"), "state1": tmp_path / "state"}, "manual")
    b = store.create("beta", {"state0": tmp_path / "state", "state1": tmp_path / "state"}, "manual")
    a_dir, b_dir = store.root / "alpha" / a.id, store.root / "beta" / b.id
    # a whole snapshot folder copied to another agency (manifest edited to match)
    moved = store.root / "beta" / a.id
    shutil.copytree(a_dir, moved)
    man = json.loads((moved / "manifest.json").read_text())
    man["agency"] = "beta"
    (moved / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(VaultError, match="wrong passphrase or corrupted"):
        store.restore("beta", a.id, "state0", tmp_path / "x", in_place=False)
    # one member file swapped for another agency's file (manifest hash updated too)
    shutil.copy(b_dir / "state0.kv1", a_dir / "state0.kv1")
    man = json.loads((a_dir / "manifest.json").read_text())
    man["members"]["state0"] = json.loads((b_dir / "manifest.json").read_text())["members"]["state0"]
    (a_dir / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(VaultError):
        store.restore("alpha", a.id, "state0", tmp_path / "y", in_place=False)
    # member renamed: state1.kv1 presented as state0.kv1
    c = store.create("alpha", {"state0": tmp_path / "state", "state1": tmp_path / "state"}, "manual")
    c_dir = store.root / "alpha" / c.id
    os.replace(c_dir / "state1.kv1", c_dir / "state0.kv1")
    man = json.loads((c_dir / "manifest.json").read_text())
    man["members"]["state0"] = man["members"]["state1"] | {"file": "state0.kv1"}
    (c_dir / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(VaultError):
        store.restore("alpha", c.id, "state0", tmp_path / "z", in_place=False)
    # snapshot folder renamed to another id
    d_id = "2030-01-01T000000Z"
    os.rename(c_dir, store.root / "alpha" / d_id)
    with pytest.raises(SnapshotError, match="does not match"):
        store.get("alpha", d_id)
    assert not any((tmp_path / n).exists() for n in "xyz")


def test_manifest_tamper_detected_by_verify(tmp_path: Path, store: SnapshotStore) -> None:
    info = store.create("alpha", {"state0": make_tree(tmp_path / "state")}, "manual")
    path = store.root / "alpha" / info.id / "manifest.json"
    man = json.loads(path.read_text())
    man["trigger"] = "timer"
    path.write_text(json.dumps(man))
    with pytest.raises(VaultError):
        store.verify("alpha", info.id)


def test_retention_keeps_last_n(tmp_path: Path, store: SnapshotStore) -> None:
    src = make_tree(tmp_path / "state")
    ids = [store.create("alpha", {"state0": src}, "timer").id for _ in range(5)]
    assert [i.id for i in store.list("alpha")] == ids[-3:]
    assert store.latest("alpha") is not None and store.latest("alpha").id == ids[-1]  # type: ignore[union-attr]
    assert audit_of(store).records[-1][2]["removed"] == [ids[1]]
    store.create("beta", {"state0": src}, "timer")
    assert len(store.list("alpha")) == 3 and len(store.list("beta")) == 1


def test_same_second_ids_disambiguated(tmp_path: Path, keys: KeyHolder) -> None:
    store = SnapshotStore(tmp_path / "s", keys=keys, keep_last=20, now=Tick(step=0))
    src = make_tree(tmp_path / "state")
    ids = [store.create("alpha", {"state0": src}, "manual").id for _ in range(12)]
    base = "2026-01-02T030405Z"
    assert ids == [f"{base}-{n}" for n in range(1, 13)]
    assert [i.id for i in store.list("alpha")] == ids


def test_ids_are_never_reused_and_sort_in_creation_order(tmp_path: Path, keys: KeyHolder) -> None:
    """Retention deletes the oldest; a later snapshot in the same second must not take a deleted id,
    and "latest" is always the newest even when the clock does not move (or moves back)."""
    clock = Tick(step=0)
    store = SnapshotStore(tmp_path / "s", keys=keys, keep_last=2, now=clock)
    src = make_tree(tmp_path / "state")
    seen: list[str] = []
    for _ in range(6):
        info = store.create("alpha", {"state0": src}, "manual")
        assert info.id not in seen
        seen.append(info.id)
        assert store.latest("alpha").id == info.id  # type: ignore[union-attr]
    assert [i.id for i in store.list("alpha")] == seen[-2:]
    assert seen[-1].endswith("-6")


def test_failed_audit_keeps_old_snapshots_and_drops_the_new_one(tmp_path: Path, keys: KeyHolder) -> None:
    """Retention runs only after the new snapshot is written and audited."""
    class FailingAudit:
        fail = False

        def __call__(self, agency_id: str, record_type: str, data: dict[str, object]) -> None:
            if self.fail:
                raise OSError(28, "No space left on device")

    audit = FailingAudit()
    store = SnapshotStore(tmp_path / "s", keys=keys, keep_last=2, audit=audit, now=Tick())
    src = make_tree(tmp_path / "state")
    kept = [store.create("alpha", {"state0": src}, "timer").id for _ in range(2)]
    audit.fail = True
    with pytest.raises(OSError):
        store.create("alpha", {"state0": src}, "timer")
    assert [i.id for i in store.list("alpha")] == kept
    assert sorted(p.name for p in (tmp_path / "s" / "alpha").iterdir() if not p.name.startswith(".")) == kept


def test_symlinks_not_followed_out_of_source(tmp_path: Path, store: SnapshotStore) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("do not copy")
    src = tmp_path / "state"
    src.mkdir()
    (src / "ok.txt").write_text("ok")
    (src / "link-file").symlink_to(outside / "secret.txt")
    (src / "link-dir").symlink_to(outside)
    info = store.create("alpha", {"state0": src}, "manual")
    out = tmp_path / "out"
    store.restore("alpha", info.id, "state0", out, in_place=False)
    assert tree(out) == {"ok.txt": b"ok"}


def test_errors_for_missing_and_bad_names(tmp_path: Path, store: SnapshotStore) -> None:
    with pytest.raises(SnapshotError, match="no snapshot"):
        store.get("alpha", "2026-01-01T000000Z")
    for bad in ("../x", "latest", "2026-01-01T000000Z/.."):
        with pytest.raises(SnapshotError, match="invalid"):
            store.get("alpha", bad)
    with pytest.raises(SnapshotError, match="not a folder"):
        store.create("alpha", {"state0": tmp_path / "missing"}, "manual")
    with pytest.raises(SnapshotError, match="member name"):
        store.create("alpha", {"../x": tmp_path}, "manual")
    with pytest.raises(SnapshotError, match="trigger"):
        store.create("alpha", {}, "Bad Trigger")
    assert store.list("alpha") == [] and store.latest("alpha") is None
    info = store.create("alpha", {}, "manual")
    with pytest.raises(SnapshotError, match="no folder member"):
        store.restore("alpha", info.id, "state0", tmp_path / "o", in_place=False)


def test_unreadable_snapshot_folder_is_skipped_in_list(tmp_path: Path, store: SnapshotStore) -> None:
    good = store.create("alpha", {"state0": make_tree(tmp_path / "state")}, "manual")
    (store.root / "alpha" / "2099-01-01T000000Z").mkdir()
    assert [i.id for i in store.list("alpha")] == [good.id]


def test_restore_cleans_leftovers_of_an_interrupted_swap(tmp_path: Path, store: SnapshotStore) -> None:
    src = make_tree(tmp_path / "state")
    info = store.create("alpha", {"state0": src}, "manual")
    before = tree(src)
    # a crash between "rename target aside" and "rename new in": target missing, old tree aside
    os.rename(src, tmp_path / ".state.old-deadbeef")
    (tmp_path / ".state.restore-cafebabe").mkdir()
    store.restore("alpha", info.id, "state0", src, in_place=True)
    assert tree(src) == before
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert len(left) == 1 and left[0].startswith(".state.before-restore-"), left  # no half-made leftovers
