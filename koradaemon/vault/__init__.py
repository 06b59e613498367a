"""Session Vault: KV-1 encrypted files, the vault key, snapshots of agency state, retention."""

from __future__ import annotations

from .keys import KeyHolder, load_passphrase, resolve_passphrase_path
from .kv1 import DECRYPT_FAILED, decrypt_stream, encrypt_stream
from .manifest import SnapshotInfo
from .scheduler import SnapshotScheduler
from .snapshots import SnapshotStore

__all__ = [
    "DECRYPT_FAILED",
    "KeyHolder",
    "SnapshotInfo",
    "SnapshotScheduler",
    "SnapshotStore",
    "decrypt_stream",
    "encrypt_stream",
    "load_passphrase",
    "resolve_passphrase_path",
]
