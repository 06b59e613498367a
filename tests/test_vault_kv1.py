"""KV-1 file format: round trips and every kind of tampering fails with the one error."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koradaemon.errors import VaultError
from koradaemon.vault.kv1 import (
    DECRYPT_FAILED,
    MAGIC,
    TAG_LEN,
    DecryptReader,
    decrypt_file,
    decrypt_stream,
    encrypt_file,
    encrypt_stream,
    file_key_from_master,
    read_header,
)

SALT = bytes(range(16))
ITER = 600_000
CHUNK = 1024
MASTER = os.urandom(32)


def key_fn(salt: bytes, iterations: int, file_id: bytes) -> bytearray:
    return file_key_from_master(MASTER, file_id)


def enc(plain: bytes, *, agency: str = "alpha", name: str = "snap/state0.kv1", chunk: int = CHUNK) -> bytes:
    out = io.BytesIO()
    n = encrypt_stream(io.BytesIO(plain), out, key_fn, salt=SALT, iterations=ITER, agency_id=agency, name=name,
                       chunk_size=chunk)
    assert n == len(plain)
    return out.getvalue()


def dec(blob: bytes, *, agency: str = "alpha", name: str = "snap/state0.kv1") -> bytes:
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(blob), out, key_fn, agency_id=agency, name=name)
    return out.getvalue()


def fails(blob: bytes, **kw: str) -> None:
    with pytest.raises(VaultError) as info:
        dec(blob, **kw)
    assert str(info.value) == DECRYPT_FAILED


def split(blob: bytes, chunk: int = CHUNK) -> tuple[bytes, list[bytes]]:
    _, header = read_header(io.BytesIO(blob))
    body = blob[len(header):]
    rec = chunk + TAG_LEN
    return header, [body[i:i + rec] for i in range(0, len(body), rec)]


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK, 5 * CHUNK + 7])
def test_round_trip_sizes(size: int) -> None:
    plain = os.urandom(size)
    blob = enc(plain)
    assert blob.startswith(MAGIC)
    assert size < 16 or plain not in blob
    assert dec(blob) == plain


def test_round_trip_large_default_chunks() -> None:
    plain = os.urandom(3 * 1024 * 1024 + 12345)
    blob = enc(plain, chunk=64 * 1024)
    _, records = split(blob, 64 * 1024)
    assert len(records) == 49 and all(len(r) == 64 * 1024 + TAG_LEN for r in records[:-1])
    assert dec(blob) == plain


def test_empty_payload_is_one_empty_final_chunk() -> None:
    blob = enc(b"")
    header, records = split(blob)
    assert records == [blob[len(header):]] and len(records[0]) == TAG_LEN
    assert dec(blob) == b""


def test_two_encryptions_differ_and_use_fresh_file_ids() -> None:
    a, b = enc(b"same"), enc(b"same")
    ha, _ = read_header(io.BytesIO(a))
    hb, _ = read_header(io.BytesIO(b))
    assert ha.file_id != hb.file_id and a != b


def test_flip_each_header_byte() -> None:
    blob = enc(os.urandom(3 * CHUNK))
    _, header = read_header(io.BytesIO(blob))
    assert len(header) == 39 + 16 + 5 + 15
    for i in range(len(header)):
        for mask in (0x01, 0x80):
            bad = bytearray(blob)
            bad[i] ^= mask
            fails(bytes(bad))


def test_flip_body_bytes() -> None:
    blob = enc(os.urandom(2 * CHUNK + 5))
    _, header = read_header(io.BytesIO(blob))
    for i in range(len(header), len(blob), 97):
        bad = bytearray(blob)
        bad[i] ^= 0x10
        fails(bytes(bad))


def test_drop_reorder_duplicate_chunks() -> None:
    blob = enc(os.urandom(4 * CHUNK + 100))
    header, r = split(blob)
    assert len(r) == 5
    variants = {
        "drop first": [r[1], r[2], r[3], r[4]],
        "drop middle": [r[0], r[1], r[3], r[4]],
        "drop last": r[:4],
        "swap": [r[1], r[0], r[2], r[3], r[4]],
        "duplicate": [r[0], r[1], r[1], r[2], r[3], r[4]],
        "duplicate last": [*r, r[4]],
        "no chunks": [],
    }
    for parts in variants.values():
        fails(header + b"".join(parts))


def test_trailing_garbage_and_truncation() -> None:
    blob = enc(os.urandom(2 * CHUNK + 3))
    for extra in (b"\x00", os.urandom(16), os.urandom(CHUNK + TAG_LEN)):
        fails(blob + extra)
    for cut in (1, 15, 16, 17, CHUNK):
        fails(blob[:-cut])
    fails(blob[:10])


def test_moved_to_other_agency_or_renamed_fails() -> None:
    blob = enc(b"secret state", agency="alpha", name="2026-01-01T000000Z/state0.kv1")
    assert dec(blob, agency="alpha", name="2026-01-01T000000Z/state0.kv1") == b"secret state"
    fails(blob, agency="beta", name="2026-01-01T000000Z/state0.kv1")
    fails(blob, agency="alpha", name="2026-01-01T000000Z/state1.kv1")
    fails(blob, agency="alpha", name="2026-01-02T000000Z/state0.kv1")


def test_header_rewritten_for_other_agency_fails() -> None:
    """An attacker editing the context in the header (consistent lengths) is caught by the tag."""
    blob = enc(b"x" * 50, agency="alpha")
    forged = blob.replace(b"\x00\x05alpha", b"\x00\x05bravo", 1)
    assert forged != blob
    fails(forged, agency="bravo")


def test_wrong_key_fails_like_corruption() -> None:
    blob = enc(b"payload")

    def other(salt: bytes, iterations: int, file_id: bytes) -> bytearray:
        return file_key_from_master(os.urandom(32), file_id)

    with pytest.raises(VaultError) as info:
        decrypt_stream(io.BytesIO(blob), io.BytesIO(), other, agency_id="alpha", name="snap/state0.kv1")
    assert str(info.value) == DECRYPT_FAILED


@pytest.mark.parametrize("iterations", [0, 1, 599_999, 10_000_001, 2**32 - 1])
def test_iterations_out_of_bounds_rejected_before_deriving(iterations: int) -> None:
    blob = bytearray(enc(b"data"))
    blob[10:14] = struct.pack(">I", iterations)
    calls: list[int] = []

    def counting(salt: bytes, it: int, file_id: bytes) -> bytearray:
        calls.append(it)
        return key_fn(salt, it, file_id)

    with pytest.raises(VaultError, match="wrong passphrase or corrupted"):
        DecryptReader(io.BytesIO(bytes(blob)), counting, agency_id="alpha", name="snap/state0.kv1")
    assert calls == []
    with pytest.raises(VaultError, match="iteration count"):
        encrypt_stream(io.BytesIO(b""), io.BytesIO(), key_fn, salt=SALT, iterations=iterations,
                       agency_id="a", name="n")


def test_reader_streams_in_small_reads() -> None:
    plain = os.urandom(3 * CHUNK + 11)
    r = DecryptReader(io.BytesIO(enc(plain)), key_fn, agency_id="alpha", name="snap/state0.kv1")
    got = bytearray()
    while block := r.read(100):
        got += block
    assert bytes(got) == plain and r.drain() == 0


def test_file_helpers_promote_only_on_success(tmp_path: Path) -> None:
    plain = os.urandom(200_000)
    (tmp_path / "plain").write_bytes(plain)
    enc_path, out = tmp_path / "x.kv1", tmp_path / "out"
    encrypt_file(tmp_path / "plain", enc_path, key_fn, salt=SALT, iterations=ITER, agency_id="alpha", name="x")
    assert decrypt_file(enc_path, out, key_fn, agency_id="alpha", name="x") == len(plain)
    assert out.read_bytes() == plain
    out.unlink()
    data = bytearray(enc_path.read_bytes())
    data[-5] ^= 1
    enc_path.write_bytes(bytes(data))
    with pytest.raises(VaultError, match="wrong passphrase or corrupted"):
        decrypt_file(enc_path, out, key_fn, agency_id="alpha", name="x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "x.kv1"]


@settings(max_examples=60, deadline=None)
@given(plain=st.binary(max_size=5000), chunk=st.integers(1024, 2048), read=st.integers(1, 3000))
def test_round_trip_property(plain: bytes, chunk: int, read: int) -> None:
    blob = enc(plain, chunk=chunk)
    _, header = read_header(io.BytesIO(blob))
    expect_records = max(1, -(-len(plain) // chunk))
    assert len(blob) == len(header) + len(plain) + TAG_LEN * expect_records
    r = DecryptReader(io.BytesIO(blob), key_fn, agency_id="alpha", name="snap/state0.kv1")
    got = bytearray()
    while block := r.read(read):
        got += block
    assert bytes(got) == plain
