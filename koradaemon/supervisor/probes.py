"""HTTP health probes against the agent on loopback (``/healthz`` live, ``/readyz`` ready)."""

from __future__ import annotations

import http.client
from dataclasses import dataclass

from ..loopback import parse_loopback_url

LIVE_PATH = "/healthz"
READY_PATH = "/readyz"


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    status: int | None = None
    error: str | None = None


class Prober:
    """Issues short GET requests to one loopback base URL; any 2xx is success."""

    def __init__(self, base_url: str, *, timeout_s: float) -> None:
        url = parse_loopback_url(base_url)  # the same check as config validation (ConfigError)
        self.host = url.host
        self.port = url.port
        self.prefix = url.prefix
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
