"""HTTP health probes against the agent on loopback (``/healthz`` live, ``/readyz`` ready)."""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import ConfigError

LIVE_PATH = "/healthz"
READY_PATH = "/readyz"
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    status: int | None = None
    error: str | None = None


class Prober:
    """Issues short GET requests to one loopback base URL; any 2xx is success."""

    def __init__(self, base_url: str, *, timeout_s: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(f"agent health_url must be http://host:port, got {base_url!r}")
        if parts.hostname not in _LOOPBACK:
            raise ConfigError(f"agent health_url must point at loopback, got host {parts.hostname!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.timeout_s = timeout_s

    def get(self, path: str) -> ProbeResult:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            conn.request("GET", self.prefix + path, headers={"Connection": "close"})
            resp = conn.getresponse()
            resp.read(65536)
            return ProbeResult(200 <= resp.status < 300, resp.status)
        except (OSError, http.client.HTTPException) as exc:
            return ProbeResult(False, None, f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    def live(self) -> ProbeResult:
        return self.get(LIVE_PATH)

    def ready(self) -> ProbeResult:
        return self.get(READY_PATH)
