"""NATS nkeys and credentials files, with ``cryptography``'s Ed25519 (no ``nkeys`` package).

An nkey is an Ed25519 key written in base32 without padding, with a CRC16-XMODEM (little-endian)
over the bytes before it:

* a seed (private): ``[0x90 | prefix >> 5][(prefix & 31) << 3][32-byte seed][crc16]``, text ``S…``
  (``SU…`` for a user);
* a public key: ``[prefix][32-byte public key][crc16]``, text ``U…`` for a user, ``A…`` an account,
  ``O…`` an operator.

The server's INFO carries a ``nonce``; CONNECT answers with ``nkey`` (the public key) or ``jwt`` (a
user JWT from a ``.creds`` file), and ``sig``, the Ed25519 signature of the nonce in base64url
without padding. A ``.creds`` file holds the user JWT and the user's seed between
``-----BEGIN NATS USER JWT-----`` / ``-----BEGIN USER NKEY SEED-----`` lines.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PREFIX_SEED: Final = 18 << 3  # "S"
PREFIX_OPERATOR: Final = 14 << 3  # "O"
PREFIX_ACCOUNT: Final = 0  # "A"
PREFIX_USER: Final = 20 << 3  # "U"
PUBLIC_PREFIXES: Final = frozenset({PREFIX_OPERATOR, PREFIX_ACCOUNT, PREFIX_USER})


class NkeyError(ValueError):
    """Text that is not a valid nkey seed, public key or credentials file (never holds the key)."""


def crc16_xmodem(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _encode(raw: bytes) -> str:
    data = raw + crc16_xmodem(raw).to_bytes(2, "little")
    return base64.b32encode(data).decode("ascii").rstrip("=")


def _decode(text: str, what: str) -> bytes:
    text = text.strip()
    try:
        data = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        raise NkeyError(f"not an nkey {what}: not base32") from None
    if len(data) < 4 or crc16_xmodem(data[:-2]) != int.from_bytes(data[-2:], "little"):
        raise NkeyError(f"not an nkey {what}: checksum does not match")
    return data[:-2]


def encode_seed(raw_seed: bytes, prefix: int = PREFIX_USER) -> str:
    if len(raw_seed) != 32 or prefix not in PUBLIC_PREFIXES:
        raise NkeyError("a seed is 32 bytes, of an operator, account or user")
    return _encode(bytes([PREFIX_SEED | prefix >> 5, (prefix & 31) << 3]) + raw_seed)


def encode_public(raw_public: bytes, prefix: int = PREFIX_USER) -> str:
    if len(raw_public) != 32 or prefix not in PUBLIC_PREFIXES:
        raise NkeyError("a public key is 32 bytes, of an operator, account or user")
    return _encode(bytes([prefix]) + raw_public)


def decode_public(text: str) -> tuple[int, bytes]:
    """(prefix, 32-byte key) of a public nkey."""
    data = _decode(text, "public key")
    if len(data) != 33 or data[0] not in PUBLIC_PREFIXES:
        raise NkeyError("not an nkey public key: wrong length or kind")
    return data[0], data[1:]


@dataclass(frozen=True, repr=False)
class KeyPair:
    prefix: int
    private: Ed25519PrivateKey

    @classmethod
    def generate(cls, prefix: int = PREFIX_USER) -> KeyPair:
        return cls(prefix, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: str | bytes | bytearray) -> KeyPair:
        text = seed.decode("ascii", "replace") if isinstance(seed, (bytes, bytearray)) else seed
        data = _decode(text, "seed")
        if len(data) != 34 or data[0] & 0xF8 != PREFIX_SEED:
            raise NkeyError("not an nkey seed: wrong length or kind (a seed starts with S)")
        prefix = (data[0] & 7) << 5 | (data[1] & 0xF8) >> 3
        if prefix not in PUBLIC_PREFIXES:
            raise NkeyError("not an nkey seed of an operator, account or user")
        return cls(prefix, Ed25519PrivateKey.from_private_bytes(data[2:]))

    @property
    def seed(self) -> str:
        return encode_seed(self.private.private_bytes_raw(), self.prefix)

    @property
    def public_key(self) -> str:
        return encode_public(self.private.public_key().public_bytes_raw(), self.prefix)

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    def sign_nonce(self, nonce: str) -> bytes:
        """The CONNECT ``sig`` for the server's nonce: base64url without padding."""
        return base64.urlsafe_b64encode(self.sign(nonce.encode())).rstrip(b"=")

    def __repr__(self) -> str:  # never the seed
        return f"KeyPair({self.public_key})"


def verify(public_key: str, data: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    _, raw = decode_public(public_key)
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, data)
    except InvalidSignature:
        return False
    return True


# -- credentials files ------------------------------------------------------------------------
JWT_BEGIN: Final = "-----BEGIN NATS USER JWT-----"
JWT_END: Final = "------END NATS USER JWT------"
SEED_BEGIN: Final = "-----BEGIN USER NKEY SEED-----"
SEED_END: Final = "------END USER NKEY SEED------"


@dataclass(frozen=True, repr=False)
class Credentials:
    jwt: str
    key: KeyPair

    def __repr__(self) -> str:
        return f"Credentials({self.key.public_key})"


def parse_creds(text: str) -> Credentials:
    """The user JWT and key pair of a ``.creds`` file (the text between its marker lines)."""
    lines = [ln.strip() for ln in text.splitlines()]

    def after(marker: str) -> str:
        try:
            i = lines.index(marker)
        except ValueError:
            raise NkeyError(f"not a NATS credentials file: no {marker!r} line") from None
        for ln in lines[i + 1:]:
            if ln:
                return ln
        raise NkeyError(f"not a NATS credentials file: nothing after {marker!r}")

    jwt = after(JWT_BEGIN)
    key = KeyPair.from_seed(after(SEED_BEGIN))
    subject = jwt_claims(jwt).get("sub")
    if subject != key.public_key:
        raise NkeyError(f"the seed in the credentials file is not the key of the JWT's user {subject}")
    return Credentials(jwt, key)


def jwt_claims(jwt: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (the server verifies them)."""
    parts = jwt.split(".")
    try:
        if len(parts) != 3:
            raise ValueError
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        raise NkeyError("not a NATS credentials file: the user JWT is not header.claims.signature") from None
    if not isinstance(claims, dict):
        raise NkeyError("not a NATS credentials file: the user JWT's claims are not an object")
    return claims


def format_creds(jwt: str, seed: str) -> str:
    return f"{JWT_BEGIN}\n{jwt}\n{JWT_END}\n\n{SEED_BEGIN}\n{seed}\n{SEED_END}\n"


# -- JWTs (for a self-contained operator/account/user setup; nsc makes the same) ----------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def mint_jwt(issuer: KeyPair, subject: str, kind: str, name: str, iat: int,
             nats: dict[str, Any] | None = None, **claims: Any) -> str:
    """A NATS v2 JWT (``alg`` ``ed25519-nkey``) of ``kind`` (operator, account or user) for the
    public key ``subject``, signed by ``issuer``; ``jti`` is the base32 SHA-512/256 of the claims."""
    import hashlib

    header = {"typ": "JWT", "alg": "ed25519-nkey"}
    body: dict[str, Any] = {"jti": "", "iat": iat, "iss": issuer.public_key, "name": name, "sub": subject,
                            **claims, "nats": {**(nats or {}), "type": kind, "version": 2}}
    h = hashlib.new("sha512_256", json.dumps(body, separators=(",", ":")).encode()).digest()
    body["jti"] = base64.b32encode(h).decode("ascii").rstrip("=")
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body, separators=(',', ':')).encode())}"
    return f"{signing_input}.{_b64(issuer.sign(signing_input.encode()))}"
