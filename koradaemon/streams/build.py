"""The outside streams from the configuration (each None when turned off)."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..config_model import Config, NatsConfig
from ..errors import ConfigError
from ..events import EventBus
from ..paths import check_relative
from ..service.tokens import TokenStore
from .access import parse_clients
from .websocket import WebSocketStream

if TYPE_CHECKING:
    from ..audit.manager import AuditManager
    from ..vault.secrets import SecretStore
    from .nats_export import NatsExporter
    from .natsauth import NatsAuth

PORT_FILE = "run/websocket.port"


def build_websocket(cfg: Config, bus: EventBus) -> WebSocketStream | None:
    ws = cfg.websocket
    if not ws.enabled:
        return None
    agencies = [a.agency_id for a in cfg.agencies]
    clients = parse_clients(ws.clients, agencies)
    if not clients:
        raise ConfigError("websocket.enabled needs at least one entry in websocket.clients")
    store = TokenStore(cfg.path(ws.tokens_dir))
    tokens = {name: store.ensure(name) for name in clients}
    tls = None
    if ws.tls_cert or ws.tls_key:
        if not (ws.tls_cert and ws.tls_key):
            raise ConfigError("websocket.tls_cert and websocket.tls_key go together")
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            tls.load_cert_chain(cfg.data_root / check_relative(ws.tls_cert, what="websocket.tls_cert"),
                                cfg.data_root / check_relative(ws.tls_key, what="websocket.tls_key"))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"websocket TLS certificate/key cannot be loaded: {exc}") from None
    return WebSocketStream(bus, host=ws.host, port=ws.port, clients=clients, tokens=tokens, agencies=agencies,
                           buffer_events=ws.buffer_events, max_clients=ws.max_clients, tls=tls,
                           port_file=cfg.path(PORT_FILE))


def _secret_ref(value: str, key: str) -> tuple[str, str]:
    agency, sep, name = value.partition("/")
    if not sep or not agency or not name:
        raise ConfigError(f"{key} must be agency/name of a secret (koradaemon secret set --agency A NAME)")
    return agency, name


def _nats_auth(n: NatsConfig, secrets: SecretStore | None) -> NatsAuth | None:
    """The credentials named in the configuration, read from the vault (at most one kind)."""
    from .natsauth import NatsAuth
    from .natskeys import NkeyError

    named = [(kind, key, value) for kind, key, value in (("token", "nats.token_secret", n.token_secret),
                                                          ("nkey", "nats.nkey_seed_secret", n.nkey_seed_secret),
                                                          ("creds", "nats.creds_secret", n.creds_secret)) if value]
    if not named:
        return None
    if len(named) > 1:
        raise ConfigError(f"{' and '.join(k for _, k, _ in named)}: set one NATS credential, not several")
    kind, key, value = named[0]
    if secrets is None:
        raise ConfigError(f"{key} needs the vault (vault.enabled: true)")
    raw = secrets.get(*_secret_ref(value, key))
    try:
        return NatsAuth.from_secret(kind, raw.decode("utf-8", "replace"))
    except NkeyError as exc:
        raise ConfigError(f"{key} ({value}): {exc}") from None
    finally:
        raw[:] = bytes(len(raw))


def build_nats(cfg: Config, bus: EventBus, audit: AuditManager, secrets: SecretStore | None,
               audit_append: Callable[[str, str, dict[str, Any]], object]) -> NatsExporter | None:
    n = cfg.nats
    if not n.enabled:
        return None
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ..errors import UsageError
    from .audittail import Head
    from .nats_export import NatsExporter
    from .natsnames import host_id

    auth = _nats_auth(n, secrets)
    if n.signing_key_secret and secrets is None:
        raise ConfigError("nats.signing_key_secret needs the vault (vault.enabled: true)")
    signer = None
    if n.signing_key_secret:
        assert secrets is not None
        agency, name = _secret_ref(n.signing_key_secret, "nats.signing_key_secret")
        try:
            raw = secrets.get(agency, name)
            signer = Ed25519PrivateKey.from_private_bytes(bytes(raw))
            raw[:] = bytes(len(raw))
        except UsageError:  # none yet: create it, held only in the vault
            signer = Ed25519PrivateKey.generate()
            secrets.set(agency, name, signer.private_bytes_raw())
            audit_append(agency, "secret_set", {"name": name, "by": "nats checkpoint key"})

    def head(agency_id: str) -> Head | None:
        h = audit.heads().get(agency_id)
        return None if h is None else Head(int(h["seq"]), int(h["segment"]), int(h["offset"]))

    return NatsExporter(bus, url=n.url, host=host_id(n.host_id), agencies=[a.agency_id for a in cfg.agencies],
                        audit_root=cfg.path(cfg.audit.dir), heads=head, spool_dir=cfg.path(n.spool_dir),
                        auth=auth, signer=signer, checkpoint_every=n.checkpoint_every,
                        checkpoint_interval_s=n.checkpoint_interval_s)
