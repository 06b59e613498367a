"""Names on the NATS side (docs/nats.md): subjects, stream names, message ids, checkpoint signing."""

from __future__ import annotations

import json
import re
import socket
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..audit.canonical import canonical_bytes

_TOKEN_BAD = re.compile(r"[^A-Za-z0-9_-]")


def token(value: str) -> str:
    """A NATS subject token / stream-name part: anything but ``A-Z a-z 0-9 _ -`` becomes ``_``."""
    out = _TOKEN_BAD.sub("_", value)
    if not out:
        raise ValueError("empty NATS token")
    return out


def host_id(configured: str) -> str:
    return token(configured or socket.gethostname().split(".")[0])


def subject(host: str, agency_id: str, kind: str) -> str:
    """``kora.<host>.<agency>.<kind>`` with kind ``events``, ``audit`` or ``checkpoint``."""
    return f"kora.{token(host)}.{token(agency_id)}.{kind}"


def stream_name(host: str, agency_id: str) -> str:
    return f"KORA_{token(host)}_{token(agency_id)}"


# -- checkpoints ---------------------------------------------------------------------------------
def sign_checkpoint(key: Ed25519PrivateKey, body: dict[str, Any]) -> dict[str, Any]:
    """The signed checkpoint: ``body`` plus ``key`` (public key, hex) and ``sig`` (Ed25519 over the
    canonical JSON of everything but ``sig``)."""
    pub = key.public_key().public_bytes_raw().hex()
    doc = {**body, "key": pub}
    return {**doc, "sig": key.sign(canonical_bytes(doc)).hex()}


def check_checkpoint(doc: dict[str, Any], pinned_key: str | None = None) -> dict[str, Any]:
    """Verify a checkpoint's signature (and that it was made by ``pinned_key`` if given); return it."""
    try:
        sig = bytes.fromhex(str(doc["sig"]))
        pub = str(doc["key"])
        body = {k: v for k, v in doc.items() if k != "sig"}
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(pub)).verify(sig, canonical_bytes(body))
    except (KeyError, ValueError, InvalidSignature):
        raise ValueError("checkpoint signature does not verify") from None
    if pinned_key is not None and pub != pinned_key:
        raise ValueError("checkpoint signed by another key than the stream's first checkpoint")
    return doc


def load_json(data: bytes) -> dict[str, Any]:
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj
