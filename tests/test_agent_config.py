"""The agent's config keys: env (plain values, reserved names refused), user/group, home, vault.exclude."""

from __future__ import annotations

from pathlib import Path

import pytest

from koradaemon.config import parse_config
from koradaemon.errors import ConfigError
from koradaemon.supervisor.identity import AgentIdentity

BASE = """\
agencies:
  - agency_id: alpha
    roots: [alpha/notes]
agent:
  agency_id: alpha
{extra}
"""


def _parse(extra: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    return parse_config(BASE.format(extra=extra), data_root=tmp_path, runtime_checks=False)  # keys, not the machine


def test_agent_env_home_user_and_vault_exclude_parse(tmp_path: Path) -> None:
    cfg = _parse("  env: {NODE_OPTIONS: --max-old-space-size=2048, LIMIT: 5}\n  home: agent/h\n  user: nobody\n"
                 "vault:\n  exclude: ['*.lock', cache/]", tmp_path)
    assert cfg.agent.env == {"NODE_OPTIONS": "--max-old-space-size=2048", "LIMIT": "5"}
    assert cfg.agent.home == "agent/h" and cfg.agent.user == "nobody"
    assert cfg.vault.exclude == ("*.lock", "cache/")


@pytest.mark.parametrize(("extra", "needle"), [
    ("  env: {KORA_TOKEN: x}", "agent.env.KORA_TOKEN: line 6"),
    ("  env: {HOME: x}", "agent.env.HOME: line 6"),
    ("  env: {OPENCLAW_STATE_DIR: x}", "agent.env.OPENCLAW_STATE_DIR"),
    ("  env: {'BAD NAME': x}", "agent.env.BAD NAME"),
    ("  env: {A: [1, 2]}", "agent.env.A: line 6: expected a plain value"),
    ("  env: [A=1]", "agent.env: line 6: expected a mapping"),
    ("  home: /abs", "agent.home: line 6"),
])
def test_bad_agent_keys_name_key_and_line(tmp_path: Path, extra: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        _parse(extra, tmp_path)
    assert needle in str(err.value)


def test_unknown_agent_user_or_root_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"agent\.user: no such user"):
        AgentIdentity.resolve("no-such-user-kora-xyz", "", tmp_path)
    with pytest.raises(ConfigError, match="must not run as root"):
        AgentIdentity.resolve("root", "", tmp_path)
    with pytest.raises(ConfigError, match=r"agent\.group"):
        AgentIdentity.resolve("", "users", tmp_path)
