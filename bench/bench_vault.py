"""Session Vault throughput: KV-1 encrypt/decrypt, snapshot create/verify/restore, and peak memory.

Run: .venv/bin/python bench/bench_vault.py [--mib 256] [--files 2000]
Prints one line per step with MB/s, and the peak RSS of this process (memory must stay flat).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import psutil

from koradaemon.vault.keys import KeyHolder
from koradaemon.vault.kv1 import CHUNK_SIZE, decrypt_stream, encrypt_stream, file_key_from_master
from koradaemon.vault.snapshots import SnapshotStore


class Zeros:
    """A plaintext source of ``n`` bytes without holding them in memory."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.block = os.urandom(CHUNK_SIZE)

    def read(self, n: int = -1) -> bytes:
        n = min(self.left, len(self.block) if n < 0 else n)
        self.left -= n
        return self.block[:n]


class Sink:
    def write(self, data: bytes) -> int:
        return len(data)


def rate(label: str, nbytes: int, seconds: float) -> None:
    rss = psutil.Process().memory_info().rss / 2**20
    mib = nbytes / 2**20
    print(f"{label:<28} {mib:8.1f} MiB {seconds:7.3f} s {mib / seconds:8.1f} MiB/s  rss {rss:6.1f} MiB")


def bench_kv1(tmp: Path, mib: int) -> None:
    master = os.urandom(32)

    def key_fn(salt: bytes, iterations: int, file_id: bytes) -> bytearray:
        return file_key_from_master(master, file_id)

    path = tmp / "blob.kv1"
    t0 = time.perf_counter()
    with open(path, "wb") as fh:
        n = encrypt_stream(Zeros(mib * 2**20), fh, key_fn, salt=bytes(16), iterations=600_000, agency_id="a",
                           name="bench")
    rate("kv1 encrypt (to file)", n, time.perf_counter() - t0)
    t0 = time.perf_counter()
    with open(path, "rb") as rfh:
        n = decrypt_stream(rfh, Sink(), key_fn, agency_id="a", name="bench")
    rate("kv1 decrypt (from file)", n, time.perf_counter() - t0)
    path.unlink()


def bench_snapshots(tmp: Path, mib: int, files: int) -> None:
    pw = tmp / "pass"
    pw.write_bytes(b"bench passphrase\n")
    pw.chmod(0o600)
    keys = KeyHolder(pw, idle_lock_s=600)
    t0 = time.perf_counter()
    keys.unlock()
    print(f"{'PBKDF2 600k (one unlock)':<28} {time.perf_counter() - t0:7.3f} s")
    src = tmp / "state"
    src.mkdir()
    blob = os.urandom(2**20)
    for i in range(mib):
        (src / f"big{i:04d}.bin").write_bytes(blob)
    for i in range(files):
        (src / f"small{i:05d}.json").write_text(f'{{"turn": {i}}}')
    total = mib * 2**20
    store = SnapshotStore(tmp / "snaps", keys=keys, keep_last=2)
    t0 = time.perf_counter()
    info = store.create("alpha", {"state0": src}, "manual")
    rate(f"snapshot create (+{files} files)", total, time.perf_counter() - t0)
    t0 = time.perf_counter()
    store.verify("alpha", info.id)
    rate("snapshot verify", total, time.perf_counter() - t0)
    t0 = time.perf_counter()
    store.restore("alpha", info.id, "state0", tmp / "restored", in_place=False)
    rate("snapshot restore", total, time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256, help="payload size in MiB")
    ap.add_argument("--files", type=int, default=2000, help="extra small files in the snapshot")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-vault-") as d:
        bench_kv1(Path(d), args.mib)
        bench_snapshots(Path(d), args.mib, args.files)
    print(f"peak rss {psutil.Process().memory_info().rss / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
