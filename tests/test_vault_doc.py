"""The reference reader printed in docs/vault-format.md decrypts real snapshots on its own."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from koradaemon.vault.keys import KeyHolder
from koradaemon.vault.snapshots import SnapshotStore

DOC = Path(__file__).resolve().parent.parent / "docs" / "vault-format.md"
PASSPHRASE = b"correct horse battery staple"


def doc_reader() -> Callable[[bytes, bytes, str, str], bytes]:
    text = DOC.read_text()
    section = text[text.index("## 4. Reference reader"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "no python block in the reference reader section"
    scope: dict[str, Any] = {}
    exec(compile(code.group(1), str(DOC), "exec"), scope)
    return scope["decrypt_kv1"]  # type: ignore[no-any-return]


def test_doc_reader_decrypts_a_snapshot(tmp_path: Path) -> None:
    decrypt_kv1 = doc_reader()
    pw = tmp_path / "pass"
    pw.write_bytes(PASSPHRASE + b"\n")
    pw.chmod(0o600)
    src = tmp_path / "state"
    (src / "sub").mkdir(parents=True)
    files = {"a.txt": b"hello", "sub/big.bin": os.urandom(300_000), "sub/exact.bin": os.urandom(64 * 1024)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    store = SnapshotStore(tmp_path / "snaps", keys=KeyHolder(pw, idle_lock_s=60), keep_last=2)
    info = store.create("alpha", {"state0": src}, "manual", {"note": "doc"})
    snap = tmp_path / "snaps" / "alpha" / info.id

    manifest = json.loads((snap / "manifest.json").read_text())
    plain: dict[str, bytes] = {}
    for member, m in manifest["members"].items():
        blob = (snap / m["file"]).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == m["sha256"]
        plain[member] = decrypt_kv1(blob, PASSPHRASE, "alpha", f"{snap.name}/{m['file']}")
    with tarfile.open(fileobj=io.BytesIO(plain["state0"])) as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    assert got == files
    assert json.loads(plain["daemon-state"])["extra_state"] == {"note": "doc"}

    blob = (snap / "state0.kv1").read_bytes()
    name = f"{snap.name}/state0.kv1"
    for data, phrase, agency, nm in ((blob, b"wrong", "alpha", name), (blob, PASSPHRASE, "beta", name),
                                     (blob, PASSPHRASE, "alpha", f"{snap.name}/state1.kv1"),
                                     (blob + b"x", PASSPHRASE, "alpha", name),
                                     (blob[:-1], PASSPHRASE, "alpha", name)):
        with pytest.raises(ValueError):
            decrypt_kv1(data, phrase, agency, nm)
