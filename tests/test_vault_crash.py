"""A snapshot writer killed with SIGKILL mid-write leaves the previous snapshot intact."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import wait_for

from koradaemon.vault.keys import KeyHolder
from koradaemon.vault.snapshots import SnapshotStore

CHILD = textwrap.dedent("""
    import sys, threading
    from pathlib import Path
    from koradaemon.vault import kv1
    from koradaemon.vault.keys import KeyHolder
    from koradaemon.vault.snapshots import SnapshotStore

    real_write = kv1.EncryptWriter.write
    written = [0]

    def write(self, data):
        n = real_write(self, data)
        written[0] += n
        if written[0] > 4 * 1024 * 1024:
            self._dst.fh.flush()
            Path(sys.argv[4]).write_text("midway")
            threading.Event().wait()  # hold here until SIGKILL
        return n

    kv1.EncryptWriter.write = write
    root, pw, src = map(Path, sys.argv[1:4])
    store = SnapshotStore(root, keys=KeyHolder(pw, idle_lock_s=60), keep_last=3)
    store.create("alpha", {"state0": src}, "timer")
    print("FINISHED", flush=True)
""")


def test_kill9_mid_write_keeps_previous_snapshot(tmp_path: Path) -> None:
    pw = tmp_path / "pass"
    pw.write_bytes(b"pw\n")
    pw.chmod(0o600)
    src = tmp_path / "state"
    src.mkdir()
    (src / "small.txt").write_text("v1")
    keys = KeyHolder(pw, idle_lock_s=60)
    store = SnapshotStore(tmp_path / "snaps", keys=keys, keep_last=3)
    first = store.create("alpha", {"state0": src}, "manual")
    (src / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))

    marker = tmp_path / "midway"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(store.root), str(pw), str(src), str(marker)],
                            stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: marker.exists() or proc.poll() is not None, 30, what="child mid-write")
        assert marker.exists(), f"child exited early with {proc.returncode}"
        proc.kill()
    finally:
        proc.kill()
        proc.wait()
    agency_dir = store.root / "alpha"
    stale = [p for p in agency_dir.iterdir() if p.name.startswith(".tmp-")]
    assert len(stale) == 1 and (stale[0] / "state0.kv1").stat().st_size > 4 * 1024 * 1024
    assert [i.id for i in store.list("alpha")] == [first.id]
    store.verify("alpha", first.id)
    out = tmp_path / "out"
    store.restore("alpha", first.id, "state0", out, in_place=False)
    assert (out / "small.txt").read_text() == "v1" and not (out / "big.bin").exists()

    second = store.create("alpha", {"state0": src}, "manual")
    assert not [p for p in agency_dir.iterdir() if p.name.startswith(".tmp-")]
    assert [i.id for i in store.list("alpha")][-1] == second.id
    store.verify("alpha", second.id)
