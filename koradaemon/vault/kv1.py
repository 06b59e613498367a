"""KV-1: the Session Vault's encrypted file format (see docs/vault-format.md, byte by byte).

A file is a header followed by AES-256-GCM chunk records. The whole header, a chunk
counter and a final-chunk flag are the associated data of every chunk, so a file moved
to another agency or name, truncated, reordered, duplicated or extended fails to decrypt.
Memory stays flat: one chunk in, one chunk out.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import VaultError
from ..fsutil import atomic_file

log = structlog.get_logger(__name__)

MAGIC = b"KORAVLT1"
VERSION = 1
KDF_PBKDF2_SHA256 = 1
CHUNK_SIZE = 64 * 1024
MIN_CHUNK, MAX_CHUNK = 1024, 16 * 1024 * 1024
MIN_ITERATIONS, MAX_ITERATIONS = 600_000, 10_000_000
MIN_SALT, MAX_SALT = 16, 64
FILE_ID_LEN = 16
TAG_LEN = 16
MAX_AGENCY_LEN, MAX_NAME_LEN = 255, 1024
HKDF_INFO = b"KORAVLT1 file key"
DECRYPT_FAILED = "cannot decrypt snapshot: wrong passphrase or corrupted/tampered data"

class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


# (salt, iterations, file_id) -> the 32-byte AES key of one file, in a buffer the caller zeroes
FileKeyFn = Callable[[bytes, int, bytes], bytearray]


def fail(reason: str) -> VaultError:
    """The one error for every unreadable file; the reason goes to the log only."""
    log.warning("vault_decrypt_failed", reason=reason)
    return VaultError(DECRYPT_FAILED)


def check_iterations(iterations: int) -> None:
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise VaultError(f"KDF iteration count {iterations} outside {MIN_ITERATIONS}..{MAX_ITERATIONS}")


def file_key_from_master(master: bytes | bytearray, file_id: bytes) -> bytearray:
    """HKDF-SHA256(IKM=master, salt=file_id, info=HKDF_INFO): a fresh key per file."""
    out = bytearray(32)
    HKDF(algorithm=hashes.SHA256(), length=32, salt=file_id, info=HKDF_INFO).derive_into(master, out)
    return out


def _aead(key: bytearray) -> AESGCM:
    """Build the cipher, then zero our copy of the file key."""
    try:
        return AESGCM(key)
    finally:
        key[:] = bytes(len(key))


def nonce(counter: int) -> bytes:
    return b"\x00\x00\x00\x00" + struct.pack(">Q", counter)


def chunk_aad(header: bytes, counter: int, final: bool) -> bytes:
    return header + struct.pack(">QB", counter, 1 if final else 0)


@dataclass(frozen=True)
class Header:
    iterations: int
    salt: bytes
    chunk_size: int
    file_id: bytes
    agency_id: str
    name: str

    def encode(self) -> bytes:
        agency, name = self.agency_id.encode(), self.name.encode()
        return b"".join((
            MAGIC, struct.pack(">BBIB", VERSION, KDF_PBKDF2_SHA256, self.iterations, len(self.salt)), self.salt,
            struct.pack(">I", self.chunk_size), self.file_id,
            struct.pack(">H", len(agency)), agency, struct.pack(">H", len(name)), name,
        ))


def _check_context(agency_id: str, name: str) -> None:
    if not 0 < len(agency_id.encode()) <= MAX_AGENCY_LEN or not 0 < len(name.encode()) <= MAX_NAME_LEN:
        raise VaultError("KV-1 context: agency_id and name must be 1..255 / 1..1024 bytes")


def _read_exact(src: Readable, n: int) -> bytes:
    parts: list[bytes] = []
    left = n
    while left > 0:
        got = src.read(left)
        if not got:
            break
        parts.append(got)
        left -= len(got)
    return b"".join(parts)


def _take(src: Readable, n: int, raw: bytearray) -> bytes:
    data = _read_exact(src, n)
    if len(data) != n:
        raise fail("header truncated")
    raw += data
    return data


def read_header(src: Readable) -> tuple[Header, bytes]:
    """Parse and sanity-check a header; return it with its exact bytes (the AAD prefix)."""
    raw = bytearray()
    if _take(src, 8, raw) != MAGIC:
        raise fail("bad magic")
    version, kdf, iterations, salt_len = struct.unpack(">BBIB", _take(src, 7, raw))
    if version != VERSION or kdf != KDF_PBKDF2_SHA256:
        raise fail(f"unsupported version {version} / kdf {kdf}")
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise fail(f"iterations {iterations} out of bounds")
    if not MIN_SALT <= salt_len <= MAX_SALT:
        raise fail(f"salt length {salt_len} out of bounds")
    salt = _take(src, salt_len, raw)
    (chunk_size,) = struct.unpack(">I", _take(src, 4, raw))
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise fail(f"chunk size {chunk_size} out of bounds")
    file_id = _take(src, FILE_ID_LEN, raw)
    try:
        agency = _take(src, struct.unpack(">H", _take(src, 2, raw))[0], raw).decode()
        name = _take(src, struct.unpack(">H", _take(src, 2, raw))[0], raw).decode()
    except UnicodeDecodeError:
        raise fail("context is not UTF-8") from None
    return Header(iterations, salt, chunk_size, file_id, agency, name), bytes(raw)


class EncryptWriter:
    """A write-only stream: plaintext in, a KV-1 file out. Call ``finish()`` to write the final chunk."""

    def __init__(self, dst: Writable, key_fn: FileKeyFn, *, salt: bytes, iterations: int, agency_id: str,
                 name: str, chunk_size: int = CHUNK_SIZE) -> None:
        check_iterations(iterations)
        _check_context(agency_id, name)
        if not MIN_SALT <= len(salt) <= MAX_SALT or not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
            raise VaultError("KV-1: salt must be 16..64 bytes and chunk size 1 KiB..16 MiB")
        file_id = os.urandom(FILE_ID_LEN)
        self._header = Header(iterations, salt, chunk_size, file_id, agency_id, name).encode()
        self._aead = _aead(key_fn(salt, iterations, file_id))
        self._dst = dst
        self._size = chunk_size
        self._buf = bytearray()
        self._counter = 0
        self._done = False
        self.plaintext_bytes = 0
        dst.write(self._header)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._done:
            raise ValueError("write after finish")
        self._buf += data
        # keep at least one full chunk buffered: only finish() knows which chunk is the last
        while len(self._buf) > self._size:
            self._emit(bytes(self._buf[: self._size]), final=False)
            del self._buf[: self._size]
        return len(data)

    def _emit(self, plain: bytes, *, final: bool) -> None:
        aad = chunk_aad(self._header, self._counter, final)
        self._dst.write(self._aead.encrypt(nonce(self._counter), plain, aad))
        self._counter += 1
        self.plaintext_bytes += len(plain)

    def finish(self) -> None:
        if not self._done:
            self._emit(bytes(self._buf), final=True)
            self._buf.clear()
            self._done = True


class DecryptReader:
    """A read-only stream of the plaintext of a KV-1 file, bound to the expected agency and name.

    Every chunk is authenticated before its bytes are handed out; the final-chunk check happens
    when the end is reached, so callers must read to EOF (``drain()``) before trusting the whole.
    """

    def __init__(self, src: Readable, key_fn: FileKeyFn, *, agency_id: str, name: str) -> None:
        self._src = src
        self._header, self._raw = read_header(src)
        h = self._header
        if h.agency_id != agency_id or h.name != name:
            raise fail("context mismatch (file moved to another agency or renamed)")
        self._aead = _aead(key_fn(h.salt, h.iterations, h.file_id))
        self._record = h.chunk_size + TAG_LEN
        self._counter = 0
        self._next = _read_exact(src, self._record)
        self._buf = bytearray()
        self._eof = False

    @property
    def header(self) -> Header:
        return self._header

    def _step(self) -> None:
        cur = self._next
        if len(cur) < TAG_LEN:
            raise fail("missing or short chunk")
        self._next = _read_exact(self._src, self._record)
        final = not self._next
        try:
            plain = self._aead.decrypt(nonce(self._counter), cur, chunk_aad(self._raw, self._counter, final))
        except InvalidTag:
            raise fail(f"chunk {self._counter} does not authenticate") from None
        self._counter += 1
        self._buf += plain
        self._eof = final

    def read(self, size: int = -1) -> bytes:
        while not self._eof and (size < 0 or len(self._buf) < size):
            self._step()
        n = len(self._buf) if size < 0 else min(size, len(self._buf))
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def drain(self) -> int:
        """Read (and authenticate) everything left; return how many plaintext bytes were skipped."""
        skipped = 0
        while chunk := self.read(self._record):
            skipped += len(chunk)
        return skipped


def encrypt_stream(src: Readable, dst: Writable, key_fn: FileKeyFn, *, salt: bytes, iterations: int,
                   agency_id: str, name: str, chunk_size: int = CHUNK_SIZE) -> int:
    """Encrypt all of ``src`` into ``dst``; return the plaintext size."""
    w = EncryptWriter(dst, key_fn, salt=salt, iterations=iterations, agency_id=agency_id, name=name,
                      chunk_size=chunk_size)
    while block := src.read(chunk_size):
        w.write(block)
    w.finish()
    return w.plaintext_bytes


def decrypt_stream(src: Readable, dst: Writable, key_fn: FileKeyFn, *, agency_id: str, name: str) -> int:
    """Decrypt ``src`` into ``dst``; return the plaintext size. On error ``dst`` holds a partial result:
    write to a temporary file and promote it only on success (as ``decrypt_file`` does)."""
    r = DecryptReader(src, key_fn, agency_id=agency_id, name=name)
    total = 0
    while block := r.read(CHUNK_SIZE):
        dst.write(block)
        total += len(block)
    return total


def decrypt_file(src: Path, dst: Path, key_fn: FileKeyFn, *, agency_id: str, name: str) -> int:
    """Decrypt the KV-1 file ``src`` to ``dst``; ``dst`` appears only if the whole file authenticated."""
    with open(src, "rb") as fh, atomic_file(dst) as out:
        return decrypt_stream(fh, out, key_fn, agency_id=agency_id, name=name)


def encrypt_file(src: Path, dst: Path, key_fn: FileKeyFn, *, salt: bytes, iterations: int, agency_id: str,
                 name: str) -> int:
    """Encrypt ``src`` to the KV-1 file ``dst`` (atomic: temp file, fsync, rename, fsync folder)."""
    with open(src, "rb") as fh, atomic_file(dst) as out:
        return encrypt_stream(fh, out, key_fn, salt=salt, iterations=iterations, agency_id=agency_id, name=name)
