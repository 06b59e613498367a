"""The gateway's config: seeded on a fresh state dir, the MCP server registered in an existing one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from koradaemon.supervisor.openclaw import mcp_entry, prepare_config

ENTRY = mcp_entry("alpha", Path("run") / "koradaemon.sock", Path("agent") / "home" / ".kora" / "token")


def test_a_fresh_state_dir_gets_a_local_gateway_config_with_a_token_and_the_mcp_server(tmp_path: Path) -> None:
    assert prepare_config(tmp_path, port=18999, entry=ENTRY) == "seeded"
    doc = json.loads((tmp_path / "openclaw.json").read_text())
    assert doc["gateway"]["mode"] == "local" and doc["gateway"]["bind"] == "loopback"
    assert doc["gateway"]["port"] == 18999
    assert doc["gateway"]["auth"]["mode"] == "token" and len(doc["gateway"]["auth"]["token"]) >= 32
    server = doc["mcp"]["servers"]["koradaemon"]
    assert server["command"] == sys.executable
    assert server["args"] == ["-m", "koradaemon", "mcp", "--agency", "alpha", "--socket", str(Path("run") /
                              "koradaemon.sock"), "--token-file", str(Path("agent") / "home" / ".kora" / "token")]
    assert (tmp_path / "openclaw.json").stat().st_mode & 0o777 == 0o600
    token = doc["gateway"]["auth"]["token"]
    assert prepare_config(tmp_path, port=1, entry=ENTRY) == "unchanged"  # never re-seeded
    assert json.loads((tmp_path / "openclaw.json").read_text())["gateway"]["auth"]["token"] == token


def test_an_operators_config_keeps_its_settings_and_gains_the_server(tmp_path: Path) -> None:
    mine = {"gateway": {"mode": "local", "port": 1234}, "mcp": {"servers": {"docs": {"command": "uvx"}}}}
    (tmp_path / "openclaw.json").write_text(json.dumps(mine))
    assert prepare_config(tmp_path, port=18999, entry=ENTRY) == "updated"
    doc = json.loads((tmp_path / "openclaw.json").read_text())
    assert doc["gateway"] == {"mode": "local", "port": 1234}
    assert doc["mcp"]["servers"]["docs"] == {"command": "uvx"} and doc["mcp"]["servers"]["koradaemon"] == ENTRY


def test_a_json5_config_is_left_alone(tmp_path: Path) -> None:
    text = "{ gateway: { mode: 'local' }, // comment\n}\n"
    (tmp_path / "openclaw.json").write_text(text)
    assert prepare_config(tmp_path, port=18999, entry=ENTRY) == "skipped"
    assert (tmp_path / "openclaw.json").read_text() == text
