"""The systemd units pass `systemd-analyze verify` without a warning; the launchd plist parses."""

from __future__ import annotations

import os
import plistlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SYSTEM_UNIT = REPO / "systemd" / "koradaemon.service"
USER_UNIT = REPO / "systemd" / "koradaemon-user.service"
PLIST = REPO / "etc" / "dev.kora.koradaemon.plist"

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze not installed (Debian/Ubuntu: apt-get install -y systemd)"
)


def verify(unit: Path, tmp_path: Path, *, user: bool) -> subprocess.CompletedProcess[str]:
    """Run `systemd-analyze [--user] verify` on a copy of ``unit``; all output is returned."""
    assert ANALYZE is not None
    copy = tmp_path / unit.name
    shutil.copyfile(unit, copy)
    env = dict(os.environ, SYSTEMD_LOG_COLOR="0", SYSTEMD_PAGER="")
    args = [ANALYZE, "verify", "--man=no", copy.name]
    if user:
        runtime = tmp_path / "xdg-runtime"
        runtime.mkdir(mode=0o700)
        env["XDG_RUNTIME_DIR"] = os.fspath(runtime)
        args.insert(1, "--user")
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def directives(unit: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#") and re.fullmatch(r"[A-Za-z]+", key):
            out.setdefault(key, []).append(value)
    return out


@needs_analyze
@pytest.mark.parametrize(("unit", "user"), [(SYSTEM_UNIT, False), (USER_UNIT, True)])
def test_unit_verifies_without_warnings(unit: Path, user: bool, tmp_path: Path) -> None:
    result = verify(unit, tmp_path, user=user)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "" and result.stdout.strip() == ""


@needs_analyze
def test_verify_does_report_a_bad_directive(tmp_path: Path) -> None:
    """The check above can fail: a misspelt directive is reported."""
    broken = tmp_path / "src" / SYSTEM_UNIT.name
    broken.parent.mkdir()
    broken.write_text(SYSTEM_UNIT.read_text().replace("WatchdogSec=30", "WatchdogSecs=30"))
    result = verify(broken, tmp_path, user=False)
    assert "WatchdogSecs" in result.stderr


@pytest.mark.parametrize("unit", [SYSTEM_UNIT, USER_UNIT])
def test_unit_has_the_required_settings(unit: Path) -> None:
    d = directives(unit)
    assert d["Type"] == ["notify"]
    assert d["NotifyAccess"] == ["main"]
    assert d["WatchdogSec"] == ["30"]
    assert d["Restart"] == ["on-failure"]
    assert d["KillMode"] == ["mixed"]
    assert d["StateDirectory"] == d["RuntimeDirectory"] == d["ConfigurationDirectory"] == ["koradaemon"]
    assert d["NoNewPrivileges"] == ["yes"]
    assert "RestartSec" in d and "TimeoutStopSec" in d
    assert d["ExecStart"][0].startswith("/usr/bin/env koradaemon run --config ")


def test_system_unit_hardening_and_credential() -> None:
    d = directives(SYSTEM_UNIT)
    assert d["ProtectSystem"] == ["strict"]
    assert d["PrivateTmp"] == ["yes"]
    assert d["ProtectHome"] == ["yes"]
    assert "ReadWritePaths" in d
    assert d["LoadCredential"][0].startswith("vault-passphrase:")
    assert d["User"] == ["koradaemon"]


@pytest.mark.parametrize("unit", [SYSTEM_UNIT, USER_UNIT])
def test_every_directive_is_commented(unit: Path) -> None:
    """Each setting line follows a comment line or another setting of the same commented group."""
    lines = unit.read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith(("#", "[")):
            j = i - 1
            while j >= 0 and "=" in lines[j] and not lines[j].startswith("#"):
                j -= 1
            assert j >= 0 and lines[j].startswith("#"), f"{unit.name}:{i + 1}: {line} has no comment"
            assert i - j <= 6, f"{unit.name}:{i + 1}: {line} is too far from its comment"


def test_launchd_plist() -> None:
    with PLIST.open("rb") as fh:
        plist = plistlib.load(fh)
    assert plist["Label"] == "dev.kora.koradaemon" == PLIST.stem
    args = plist["ProgramArguments"]
    assert args[1:4] == ["koradaemon", "run", "--config"]
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert isinstance(plist["ThrottleInterval"], int) and plist["ThrottleInterval"] >= 10
    assert plist["RunAtLoad"] is True
    assert plist["ProcessType"] == "Background"
    assert "KORA_DATA_ROOT" in plist["EnvironmentVariables"]
    assert plist["StandardOutPath"] and plist["StandardErrorPath"]
    assert plist["Umask"] == 0o077
