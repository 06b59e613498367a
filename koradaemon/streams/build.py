"""The outside streams from the configuration (each None when turned off)."""

from __future__ import annotations

import ssl

from ..config_model import Config
from ..errors import ConfigError
from ..events import EventBus
from ..paths import check_relative
from ..service.tokens import TokenStore
from .access import parse_clients
from .websocket import WebSocketStream

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
