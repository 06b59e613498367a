from __future__ import annotations

from pathlib import Path

import pytest

from koradaemon.config import load_config, parse_config
from koradaemon.errors import ConfigError

GOOD = """\
version: 1
watch:
  debounce_ms: 30
agencies:
  - agency_id: demo
    roots: [notes, docs/x]
    ignore: ["*.tmp"]
"""


def test_good_config_parses_to_frozen_dataclasses(tmp_path: Path) -> None:
    cfg = parse_config(GOOD, data_root=tmp_path)
    assert cfg.watch.debounce_ms == 30
    assert cfg.agencies[0].roots == ("notes", "docs/x")
    assert cfg.path(cfg.index.database) == tmp_path / "kora_kernel.db"
    with pytest.raises(AttributeError):
        cfg.watch.debounce_ms = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("agencies: []", "agencies: line 1"),
        ("bogus: 1\nagencies: []", "bogus: line 1: unknown key"),
        ("watch:\n  debounce_ms: 500\nagencies: [{agency_id: a}]", "watch.debounce_ms: line 2: 500 is out of range"),
        ("watch:\n  debounce_ms: fast\n", "watch.debounce_ms: line 2: expected an integer"),
        ("watch:\n  debounce_ms: true\n", "expected an integer"),
        ("agencies:\n  - agency_id: a\n    roots: [/etc]\n", "agencies[0].roots[0]: line 3"),
        ("agencies:\n  - agency_id: a\n    roots: [../x]\n", "contains '..'"),
        ("agencies:\n  - agency_id: a\n    roots: [a/../../x]\n", "contains '..'"),
        ("agencies:\n  - agency_id: a\n    bogus: 1\n", "agencies[0].bogus: line 3: unknown key"),
        ("agencies:\n  - agency_id: Bad/Id\n", "agency_id"),
        ("agencies:\n  - agency_id: a\n  - agency_id: a\n", "duplicate agency"),
        ("x: 1\nx: 2\n", "x: line 2: duplicate key"),
        ("a: [", "malformed YAML"),
        ("", "empty"),
        ("- 1\n- 2\n", "top level must be a mapping"),
        ("index:\n  database: /var/lib/x.db\nagencies: [{agency_id: a}]", "index.database: line 2"),
        ("log:\n  level: loud\nagencies: [{agency_id: a}]", "log.level: line 2: 'loud' is not one of"),
        ("agent:\n  enabled: true\n  agency_id: nobody\nagencies: [{agency_id: a}]", "agent.agency_id"),
        ("version: 2\nagencies: [{agency_id: a}]", "only version 1"),
    ],
)
def test_bad_config_names_key_and_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, data_root=tmp_path)
    assert expected in str(err.value)
    assert err.value.exit_code == 78


def test_missing_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"agencies:\n  - agency_id: \xff\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(bad)


def test_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parent.parent / "etc" / "koradaemon.example.yaml"
    cfg = load_config(example)
    assert cfg.agencies
