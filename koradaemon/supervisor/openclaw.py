"""OpenClaw's own configuration, prepared by the daemon before each start of the gateway.

A fresh state directory has no ``openclaw.json`` and the gateway refuses to start (exit 78, "Missing
config"). The daemon seeds one: ``gateway.mode: local`` on loopback at the health URL's port, token
auth with a generated token. In every (plain JSON) config it keeps ``mcp.servers.koradaemon``
pointing at this installation's ``koradaemon mcp`` for the agent's agency, so the agent can search
its memory. A config the operator wrote in JSON5 (not plain JSON) is left alone and logged.
"""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path
from typing import Any

import structlog

from ..fsutil import atomic_write_bytes

log = structlog.get_logger(__name__)

CONFIG_NAME = "openclaw.json"
MCP_SERVER_NAME = "koradaemon"


def mcp_entry(agency_id: str, socket_path: Path, token_file: Path) -> dict[str, Any]:
    """The ``mcp.servers`` entry: this Python running ``koradaemon mcp`` (socket and token file explicit,
    since the gateway passes MCP servers only a minimal environment)."""
    return {"command": sys.executable,
            "args": ["-m", "koradaemon", "mcp", "--agency", agency_id, "--socket", str(socket_path),
                     "--token-file", str(token_file)]}


def prepare_config(state_dir: Path, *, port: int, entry: dict[str, Any]) -> str:
    """Seed or update ``openclaw.json``; returns what was done: seeded, updated, unchanged or skipped."""
    path = state_dir / CONFIG_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        doc: dict[str, Any] = {
            "gateway": {"mode": "local", "bind": "loopback", "port": port,
                        "auth": {"mode": "token", "token": secrets.token_urlsafe(32)}},
            "mcp": {"servers": {MCP_SERVER_NAME: entry}},
        }
        _write(path, doc)
        log.info("openclaw_config_seeded", path=str(path), port=port)
        return "seeded"
    try:
        doc = json.loads(text)
    except ValueError:
        log.warning("openclaw_config_not_plain_json", path=str(path),
                    hint=f"add mcp.servers.{MCP_SERVER_NAME} by hand (see docs/mcp.md)")
        return "skipped"
    if not isinstance(doc, dict):
        return "skipped"
    servers = doc.setdefault("mcp", {}).setdefault("servers", {}) if isinstance(doc.get("mcp", {}), dict) else None
    if not isinstance(servers, dict):
        return "skipped"
    if servers.get(MCP_SERVER_NAME) == entry:
        return "unchanged"
    servers[MCP_SERVER_NAME] = entry
    _write(path, doc)
    log.info("openclaw_config_mcp_registered", path=str(path), server=MCP_SERVER_NAME)
    return "updated"


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
