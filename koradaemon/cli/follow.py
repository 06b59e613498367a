"""`koradaemon tail` / `watch-events`: follow an agency's live events through the ``subscribe`` operation."""

from __future__ import annotations

import json
import time
from typing import Any

from .quickconf import ClientConf
from .text import escape


def follow(conf: ClientConf, agency: str | None, token: str, *, as_json: bool) -> int:
    """Print one line per event until the daemon stops (exit 0) or Ctrl-C (exit 130, from main)."""
    from pathlib import Path

    from ..control.client import ControlClient

    assert agency is not None
    client = ControlClient(Path(conf.socket_path()), timeout=30)
    stream = client.stream("subscribe", agency, token, idle_timeout=None)
    try:
        for event in stream:
            print(json.dumps(event, ensure_ascii=False, sort_keys=True) if as_json else describe(event), flush=True)
    finally:
        stream.close()
    return 0


def describe(event: dict[str, Any]) -> str:
    kind = str(event.get("type", "?"))
    stamp = time.strftime("%H:%M:%S")
    if kind == "subscribed":
        return f"{stamp} following agency {event.get('agency_id')} (Ctrl-C to stop)"
    if kind == "dropped":
        return f"{stamp} … {event.get('count')} event(s) dropped (this terminal was too slow)"
    data = event.get("data")  # events of the schema (docs/events.md) carry their fields under "data"
    fields = {**(data if isinstance(data, dict) else {}),
              **{k: v for k, v in event.items() if k in ("seq",) and v is not None}}
    if not isinstance(data, dict):
        fields = dict(event)
    where = fields.get("path")
    detail = " ".join(f"{k}={escape(str(v))}" for k, v in sorted(fields.items())
                      if k not in ("type", "path", "sha256", "agency_id", "v", "ts", "hash", "data"))
    target = f" {escape(str(where))}" if where is not None else ""
    return f"{stamp} {kind}{target}" + (f"  {detail}" if detail else "")
