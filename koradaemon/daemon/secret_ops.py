"""The secrets vault inside the daemon: opening it, the agent's secret environment, socket operations.

Secret operations change or reveal credentials, so they answer only peers running as root or as
the daemon's own user: the agent holds its agency's token but, run under its own uid, cannot read
or change the vault (it receives its secrets in its environment, nothing more).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import structlog

from ..config_model import Config
from ..control.protocol import Request
from ..errors import AuthError, ConfigError, UsageError, VaultError
from ..vault.keys import KeyHolder, resolve_passphrase_path
from ..vault.secrets import SECRETS_DIR, SecretStore, check_name, parse_secret_env

log = structlog.get_logger(__name__)

AuditFn = Callable[[str, str, dict[str, Any]], object]


def open_secrets(cfg: Config, keys: KeyHolder | None) -> SecretStore | None:
    """The daemon's secret store, sharing the snapshot vault's key holder (one idle auto-lock)."""
    if keys is None:
        return None
    return SecretStore(cfg.path(SECRETS_DIR), keys)


def offline_store(cfg: Config) -> SecretStore:
    """A store for a CLI run without a daemon (its own key holder, locked when the process ends)."""
    if not cfg.vault.enabled:
        raise VaultError("the vault is disabled (vault.enabled: false): no secrets vault")
    keys = KeyHolder(resolve_passphrase_path(cfg.vault.passphrase_file, cfg.data_root),
                     idle_lock_s=cfg.vault.idle_lock_s, iterations=cfg.vault.kdf_iterations)
    return SecretStore(cfg.path(SECRETS_DIR), keys)


def agent_secret_env(cfg: Config, store: SecretStore | None) -> Callable[[], Mapping[str, str]] | None:
    """What the supervisor calls at each spawn: ``agent.secret_env`` decrypted, or None if none."""
    try:
        wanted = parse_secret_env(cfg.agent.secret_env)
    except UsageError as exc:
        raise ConfigError(str(exc)) from None
    if not wanted:
        return None
    if store is None:
        raise ConfigError("agent.secret_env needs the vault (vault.enabled: true)")
    agency = cfg.agent.agency_id
    return lambda: store.environment(agency, wanted)


def decode_value(args: Mapping[str, Any]) -> bytes:
    value = args.get("value_b64")
    if not isinstance(value, str):
        raise UsageError("argument 'value_b64' must be str")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError("argument 'value_b64' is not base64") from None


class SecretContext(Protocol):
    secrets: SecretStore | None

    def audit_append(self, agency_id: str, record_type: str, data: dict[str, Any]) -> None: ...


class SecretOps:
    """``secret.set|get|list|rm``: agency-scoped, operator-only, audited by name (never by value)."""

    def __init__(self, ctx: SecretContext, check_unlocked: Callable[[Request], object]) -> None:
        self.ctx = ctx
        self.check_unlocked = check_unlocked

    def _store(self, req: Request) -> SecretStore:
        self.check_unlocked(req)
        peer = req.peer
        if peer is None or peer.uid not in (0, os.getuid()):
            raise AuthError("secret operations are for the operator (root or the daemon's user) only")
        if self.ctx.secrets is None:
            raise VaultError("the vault is disabled (vault.enabled: false): no secrets vault")
        return self.ctx.secrets

    @staticmethod
    def _name(req: Request) -> str:
        name = req.args.get("name")
        if not isinstance(name, str):
            raise UsageError("argument 'name' must be str")
        return check_name(name)

    def set(self, req: Request) -> dict[str, Any]:
        store, name = self._store(req), self._name(req)
        size = store.set(req.agency_id, name, decode_value(req.args))
        self.ctx.audit_append(req.agency_id, "secret_set", {"name": name})
        log.info("secret_set", agency_id=req.agency_id, name=name)
        return {"name": name, "bytes": size}

    def get(self, req: Request) -> dict[str, Any]:
        store, name = self._store(req), self._name(req)
        value = store.get(req.agency_id, name)
        try:
            self.ctx.audit_append(req.agency_id, "secret_read", {"name": name})
            return {"name": name, "value_b64": base64.b64encode(bytes(value)).decode()}
        finally:
            value[:] = bytes(len(value))

    def list(self, req: Request) -> dict[str, Any]:
        return {"names": self._store(req).list(req.agency_id)}

    def rm(self, req: Request) -> dict[str, Any]:
        store, name = self._store(req), self._name(req)
        store.remove(req.agency_id, name)
        self.ctx.audit_append(req.agency_id, "secret_rm", {"name": name})
        log.info("secret_removed", agency_id=req.agency_id, name=name)
        return {"name": name, "removed": True}

    def handlers(self) -> dict[str, Callable[[Request], dict[str, Any]]]:
        return {"secret.set": self.set, "secret.get": self.get, "secret.list": self.list, "secret.rm": self.rm}

