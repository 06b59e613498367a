"""The secrets vault: KV-1 files per secret, wrong passphrase, tamper, moved files, idle lock,
the CLI (stdin, offline and through the daemon), the agent's environment, nothing leaks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DaemonProc, wait_for
from test_daemon_agent import agent_daemon, kill_daemon, wait_agent_ready

from koradaemon.errors import UsageError, VaultError
from koradaemon.vault.keys import KeyHolder
from koradaemon.vault.kv1 import MIN_ITERATIONS
from koradaemon.vault.secrets import SecretStore

VALUE = b"sk-test-7f3a9c1e-mauve-otter"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def holder(tmp_path: Path, passphrase: bytes, clock: Clock | None = None) -> KeyHolder:
    p = tmp_path / f"pass-{len(passphrase)}-{passphrase[:3].hex()}"
    p.write_bytes(passphrase)
    p.chmod(0o600)
    return KeyHolder(p, idle_lock_s=60, iterations=MIN_ITERATIONS, **({"clock": clock} if clock else {}))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyHolder:
    return holder(tmp_path_factory.mktemp("keys"), b"correct horse battery staple")


def test_set_get_list_rm_round_trip(tmp_path: Path, keys: KeyHolder) -> None:
    store = SecretStore(tmp_path / "sv", keys)
    assert store.set("alpha", "api-key", VALUE) == len(VALUE)
    store.set("alpha", "other", b"x")
    assert bytes(store.get("alpha", "api-key")) == VALUE
    assert store.list("alpha") == ["api-key", "other"] and store.list("beta") == []
    raw = (tmp_path / "sv" / "alpha" / "api-key.kv1").read_bytes()
    assert raw.startswith(b"KORAVLT1") and VALUE not in raw
    assert (tmp_path / "sv" / "alpha" / "api-key.kv1").stat().st_mode & 0o777 == 0o600
    store.remove("alpha", "api-key")
    assert store.list("alpha") == ["other"]
    with pytest.raises(UsageError, match="no secret"):
        store.get("alpha", "api-key")


@pytest.mark.parametrize("name", ["", "../x", ".hidden", "a/b", "x" * 65, "-flag", "a\x00b"])
def test_bad_names_refused(tmp_path: Path, keys: KeyHolder, name: str) -> None:
    with pytest.raises(UsageError, match="bad secret name"):
        SecretStore(tmp_path, keys).set("alpha", name, b"v")


def test_wrong_passphrase_fails(tmp_path: Path, keys: KeyHolder) -> None:
    SecretStore(tmp_path / "sv", keys).set("alpha", "api-key", VALUE)
    other = SecretStore(tmp_path / "sv", holder(tmp_path, b"wrong passphrase"))
    with pytest.raises(VaultError, match="wrong passphrase"):
        other.get("alpha", "api-key")


def test_tampered_file_fails(tmp_path: Path, keys: KeyHolder) -> None:
    store = SecretStore(tmp_path / "sv", keys)
    store.set("alpha", "api-key", VALUE)
    path = tmp_path / "sv" / "alpha" / "api-key.kv1"
    raw = bytearray(path.read_bytes())
    for pos in (len(raw) - 1, len(raw) - 20, 60):
        bad = bytearray(raw)
        bad[pos] ^= 0x01
        path.write_bytes(bytes(bad))
        with pytest.raises(VaultError):
            store.get("alpha", "api-key")
    path.write_bytes(bytes(raw[:-1]))  # truncated
    with pytest.raises(VaultError):
        store.get("alpha", "api-key")


def test_file_moved_to_another_agency_or_name_fails(tmp_path: Path, keys: KeyHolder) -> None:
    store = SecretStore(tmp_path / "sv", keys)
    store.set("alpha", "api-key", VALUE)
    (tmp_path / "sv" / "beta").mkdir()
    shutil.copy(tmp_path / "sv" / "alpha" / "api-key.kv1", tmp_path / "sv" / "beta" / "api-key.kv1")
    shutil.copy(tmp_path / "sv" / "alpha" / "api-key.kv1", tmp_path / "sv" / "alpha" / "renamed.kv1")
    with pytest.raises(VaultError):
        store.get("beta", "api-key")
    with pytest.raises(VaultError):
        store.get("alpha", "renamed")


def test_key_is_zeroed_after_idle_lock(tmp_path: Path) -> None:
    clock = Clock()
    keys = holder(tmp_path, b"pw for idle", clock)
    store = SecretStore(tmp_path / "sv", keys)
    store.set("alpha", "k", VALUE)
    assert not keys.is_locked
    held = list(keys._keys.values())
    clock.t += 61
    assert keys.maybe_lock() and keys.is_locked
    assert all(bytes(k) == bytes(32) for k in held)
    assert bytes(store.get("alpha", "k")) == VALUE  # unlocks again from the passphrase file


# -- the command line and the daemon ------------------------------------------------------------
def cli(d: DaemonProc, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    cmd = [sys.executable, "-m", "koradaemon", "-c", str(d.config), "--data-root", str(d.root), *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, timeout=120, env=d.env)


def audit_lines(d: DaemonProc, agency: str = "alpha") -> list[str]:
    return [line for seg in sorted((d.root / "audit" / agency).glob("audit-*.jsonl"))
            for line in seg.read_text().splitlines()]


def files_containing(root: Path, needle: bytes, skip: set[Path]) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p not in skip and needle in p.read_bytes()]


def test_cli_offline_stdin_audited_by_name_only(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path)
    res = cli(d, "secret", "set", "--agency", "alpha", "api-key", stdin=VALUE + b"\n")
    assert res.returncode == 0, res.stderr
    assert cli(d, "secret", "list", "--agency", "alpha").stdout == b"api-key\n"
    got = cli(d, "secret", "get", "--agency", "alpha", "api-key")
    assert got.returncode == 0 and got.stdout == VALUE
    assert cli(d, "secret", "list", "--agency", "beta").stdout == b""
    records = [json.loads(line) for line in audit_lines(d)]
    assert [r["data"] for r in records if r["type"] in ("secret_set", "secret_read")] == [
        {"name": "api-key"}, {"name": "api-key"}]
    assert files_containing(tmp_path, VALUE, set()) == []  # nowhere in clear: audit, index, vault
    # a wrong passphrase: one clear line, the data exit code
    (tmp_path / "secrets" / "pass").write_text("not the passphrase\n")
    bad = cli(d, "secret", "get", "--agency", "alpha", "api-key")
    assert bad.returncode == 65 and bad.stdout == b""
    err = bad.stderr.decode()
    assert "Traceback" not in err and VALUE.decode() not in err
    assert err.splitlines()[-1].startswith("koradaemon: error: cannot decrypt secret 'api-key'")
    assert "wrong passphrase" in err.splitlines()[-1]
    rm = cli(d, "secret", "rm", "--agency", "alpha", "api-key")
    assert rm.returncode == 0 and cli(d, "secret", "list", "--agency", "alpha").stdout == b""


def test_cli_set_from_a_file(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path)
    (tmp_path / "key.txt").write_bytes(VALUE + b"\n")
    res = cli(d, "secret", "set", "--agency", "alpha", "openai-key", "--file", str(tmp_path / "key.txt"))
    assert res.returncode == 0, res.stderr
    assert cli(d, "secret", "get", "--agency", "alpha", "openai-key").stdout == VALUE
    missing = cli(d, "secret", "set", "--agency", "alpha", "x", "--file", str(tmp_path / "absent.txt"))
    assert missing.returncode == 64 and b"cannot read" in missing.stderr


def test_cli_refuses_value_in_argv_and_unknown_agency(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path)
    res = cli(d, "secret", "set", "--agency", "alpha", "api-key", VALUE.decode())
    assert res.returncode == 64 and b"unrecognized arguments" in res.stderr  # a usage error (sysexits)
    res = cli(d, "secret", "list", "--agency", "gamma")
    assert res.returncode == 64 and b"unknown agency" in res.stderr


def test_agent_sees_secret_log_status_and_disk_never_do(tmp_path: Path) -> None:
    d = agent_daemon(tmp_path)
    text = d.config.read_text().replace("  backoff_max_s: 1\n",
                                        '  backoff_max_s: 1\n  secret_env: ["SERVICE_API_KEY=api-key"]\n')
    d.config.write_text(text)
    assert cli(d, "secret", "set", "--agency", "alpha", "api-key", stdin=VALUE).returncode == 0
    try:
        d.start()
        wait_agent_ready(d)
        env = json.loads((tmp_path / "alpha" / "state" / "env.json").read_text())
        assert env["SERVICE_API_KEY"] == VALUE.decode()
        # through the running daemon's socket: set, get, list; audited
        res = cli(d, "secret", "set", "--agency", "alpha", "second", stdin=b"two-" + VALUE)
        assert res.returncode == 0, res.stderr
        assert cli(d, "secret", "get", "--agency", "alpha", "second").stdout == b"two-" + VALUE
        assert cli(d, "secret", "list", "--agency", "alpha").stdout == b"api-key\nsecond\n"
        wait_for(lambda: any('"secret_set"' in line and '"second"' in line for line in audit_lines(d)), 10,
                 what="online secret_set audited")
        status = json.dumps(d.client_call("status"))
        assert VALUE.decode() not in status
    finally:
        assert d.stop() == 0
        kill_daemon(d)
    # the fake agent itself dumps its environment into env.json; nothing else holds the value
    leaks = files_containing(tmp_path, VALUE, {tmp_path / "alpha" / "state" / "env.json"})
    assert leaks == []
    assert VALUE not in d.log.read_bytes()


def test_agent_not_started_when_its_secret_is_missing(tmp_path: Path) -> None:
    d = agent_daemon(tmp_path)
    text = d.config.read_text().replace("  backoff_max_s: 1\n",
                                        '  backoff_max_s: 1\n  secret_env: ["SERVICE_API_KEY=absent"]\n')
    d.config.write_text(text)
    try:
        d.start()
        wait_for(lambda: any(e.get("event") == "agent_secrets_unavailable" and "absent" in e.get("error", "")
                             for e in d.log_events()), 20, 0.05, "missing secret reported")
        assert not (tmp_path / "alpha" / "state" / "env.json").exists()
    finally:
        assert d.stop() == 0
        kill_daemon(d)
