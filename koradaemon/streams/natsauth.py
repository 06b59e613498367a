"""How the daemon and the verifier authenticate to NATS: a token, an nkey seed or a ``.creds`` file.

The nkey and JWT cases sign the server's nonce with :mod:`.natskeys` (``cryptography``'s Ed25519)
and hand nats-py the result through its public ``signature_cb`` / ``user_jwt_cb`` options; nats-py's
own ``nkeys_seed`` / ``user_credentials`` options import the ``nkeys`` package, which this project
does not use.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NatsClient

from .natskeys import Credentials, KeyPair, NkeyError, parse_creds

KINDS = ("token", "nkey", "creds")


@dataclass(frozen=True, repr=False)
class NatsAuth:
    """One way to authenticate (exactly one of the three is set)."""

    token: str | None = None
    key: KeyPair | None = None  # an nkey user, or the user key of a .creds file (with jwt)
    jwt: str | None = None

    @classmethod
    def from_secret(cls, kind: str, value: str) -> NatsAuth:
        """From a secret's text: a token, an nkey seed (``SU…``) or a whole ``.creds`` file.
        Raises :class:`NkeyError` (never showing the value) for a seed or file that is not one."""
        value = value.strip()
        if kind == "token":
            return cls(token=value)
        if kind == "nkey":
            key = KeyPair.from_seed(value)
            if not key.public_key.startswith("U"):
                raise NkeyError("the nkey seed is not a user's (a user seed starts with SU)")
            return cls(key=key)
        if kind == "creds":
            creds: Credentials = parse_creds(value)
            return cls(key=creds.key, jwt=creds.jwt)
        raise ValueError(f"unknown NATS credential kind {kind!r}")

    def describe(self) -> str:
        """What the server is shown (for log lines): never the token or the seed."""
        if self.key is not None:
            return f"{'user JWT of ' if self.jwt else 'nkey '}{self.key.public_key}"
        return "token" if self.token else "no credentials"

    def __repr__(self) -> str:
        return f"NatsAuth({self.describe()})"


class NatsRefused(Exception):
    """The server refused the credentials: one line naming what was shown (never the secret)."""


async def connect(url: str, auth: NatsAuth | None, *, timeout: float, **opts: Any) -> NatsClient:
    """``nats.connect`` with ``auth`` applied, given up after ``timeout`` seconds (TimeoutError),
    or as soon as the server refuses the credentials (:class:`NatsRefused`), even with reconnects
    allowed (nats-py would otherwise keep trying the same refused credentials)."""
    nc = NatsClient()
    if auth is not None and auth.token:
        opts["token"] = auth.token
    if auth is not None and auth.key is not None:
        opts["signature_cb"] = auth.key.sign_nonce  # base64url of the nonce's signature
        if auth.jwt is not None:
            jwt = auth.jwt.encode()
            opts["user_jwt_cb"] = lambda: jwt
        else:
            # CONNECT's "nkey" comes from this attribute (nats-py 2.x): its only public setter,
            # nkeys_seed, imports the nkeys package. The nkey tests against a real server check it.
            nc._public_nkey = auth.key.public_key
    watch = RefusalWatch(also=opts.pop("error_cb", None))
    task = asyncio.ensure_future(nc.connect(url, error_cb=watch.callback, **opts))
    refusal = asyncio.ensure_future(watch.seen.wait())
    try:
        done, _ = await asyncio.wait({task, refusal}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        refusal.cancel()
    if task in done:
        exc = task.exception()
        if exc is None:
            return nc
        if not is_refusal(exc):
            raise exc
        watch.refused = watch.refused or _reason(exc)
    else:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
    with contextlib.suppress(Exception):
        await nc.close()
    if watch.refused is not None:
        shown = auth.describe() if auth is not None else "no credentials"
        raise NatsRefused(f"NATS at {url} refused the credentials ({shown}): {watch.refused}")
    raise TimeoutError(f"no connection to NATS at {url} within {timeout:g} s")


def is_refusal(exc: BaseException) -> bool:
    """Whether a NATS error is the server refusing the credentials (not an outage)."""
    text = str(exc).lower()
    return "authorization violation" in text or "authentication" in text


def _reason(exc: BaseException) -> str:
    return str(exc).removeprefix("nats: ").strip("'\"")


class RefusalWatch:
    """Notes the server's refusal of the credentials (its :meth:`callback` is the ``error_cb``;
    nats-py takes only a coroutine function there), then calls ``also``."""

    def __init__(self, also: Callable[[Exception], Awaitable[None]] | None = None) -> None:
        self.refused: str | None = None
        self.seen = asyncio.Event()
        self.also = also

    async def callback(self, exc: Exception) -> None:
        if is_refusal(exc):
            self.refused = _reason(exc)
            self.seen.set()
        if self.also is not None:
            await self.also(exc)
