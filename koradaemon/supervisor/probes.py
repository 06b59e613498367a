"""HTTP health probes against the agent on loopback (``/healthz`` live, ``/readyz`` ready)."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field
from typing import Any

from ..loopback import parse_loopback_url

LIVE_PATH = "/healthz"
READY_PATH = "/readyz"


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    status: int | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # the JSON object the endpoint answered, if any


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
            body = resp.read(65536)
            return ProbeResult(200 <= resp.status < 300, resp.status, detail=_json_object(body))
        except (OSError, http.client.HTTPException) as exc:
            return ProbeResult(False, None, f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    def live(self) -> ProbeResult:
        return self.get(LIVE_PATH)

    def ready(self) -> ProbeResult:
        return self.get(READY_PATH)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def degraded_modes(ready_detail: dict[str, Any]) -> list[str]:
    """The gateway's own degraded modes in its ``/readyz`` details (OpenClaw: ``failing``, ``eventLoop``)."""
    modes: list[str] = []
    failing = ready_detail.get("failing")
    if isinstance(failing, list):
        modes.extend(f"failing:{str(f)[:64]}" for f in failing[:20])
    loop = ready_detail.get("eventLoop")
    if isinstance(loop, dict) and loop.get("degraded") is True:
        reasons = loop.get("reasons")
        why = ",".join(str(r)[:32] for r in reasons[:5]) if isinstance(reasons, list) and reasons else "degraded"
        modes.append(f"event_loop:{why}")
    if ready_detail.get("degraded") is True:
        modes.append("degraded")
    return modes
