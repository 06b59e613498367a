"""Configuration: structure, the one validation (layout, files, commands, URLs), every error at once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import run_as_user

from koradaemon.config import load_config, parse_config
from koradaemon.config_checks import ConfigInvalid
from koradaemon.errors import ConfigError
from koradaemon.supervisor.probes import Prober

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "etc" / "koradaemon.example.yaml"

GOOD = """\
version: 1
watch:
  debounce_ms: 30
vault:
  passphrase_file: secrets/pass
agencies:
  - agency_id: demo
    roots: [notes, docs/x]
    ignore: ["*.tmp"]
"""


def prepare(root: Path, *dirs: str) -> Path:
    """A data root as an operator prepares it: watched folders and a 0600 passphrase file."""
    for d in ("notes", "docs/x", "alpha/notes", "beta/notes", *dirs):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "secrets").mkdir(mode=0o700, exist_ok=True)
    secret = root / "secrets" / "pass"
    secret.write_text("correct horse battery staple\n")
    secret.chmod(0o600)
    return root


def problems(root: Path, text: str) -> ConfigInvalid:
    cfg = root / "koradaemon.yaml"
    cfg.write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError) as err:
        load_config(cfg, data_root=root)
    assert err.value.exit_code == 78
    assert isinstance(err.value, ConfigInvalid), str(err.value)
    return err.value


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("KORA_DATA_ROOT", "STATE_DIRECTORY",
                                                             "KORA_RUNTIME_DIR", "RUNTIME_DIRECTORY")}
    return subprocess.run([sys.executable, "-m", "koradaemon", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env={**clean, **(env or {})}, timeout=60, cwd=REPO)


def test_good_config_parses_to_frozen_dataclasses(tmp_path: Path) -> None:
    cfg = parse_config(GOOD, data_root=prepare(tmp_path))
    assert cfg.watch.debounce_ms == 30
    assert cfg.agencies[0].roots == ("notes", "docs/x")
    assert cfg.path(cfg.index.database) == tmp_path / "kora_kernel.db"
    assert cfg.warnings == ()
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
        ("agent:\n  enabled: true\n  agency_id: nobody\nagencies: [{agency_id: a}]", "agent.agency_id: line 3"),
        ("version: 2\nagencies: [{agency_id: a}]", "only version 1"),
        ("version: true\nagencies: [{agency_id: a}]", "version: line 1: only version 1"),
        ("agencies:\n  - agency_id: a\n    roots: []\n", "agencies[0].roots: line 3: agency 'a' has no roots"),
        ("agencies:\n  - agency_id: a\n", "agencies[0].roots: line 2: agency 'a' has no roots"),
        ("agencies:\n  - agency_id: a\n    roots: [notes]\n    ignore: ['ok', '[z-a]']\n",
         "agencies[0].ignore[1]: line 4: bad ignore pattern '[z-a]'"),
    ],
)
def test_bad_config_names_key_and_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, data_root=prepare(tmp_path))
    assert expected in str(err.value)
    assert err.value.exit_code == 78


def test_every_error_is_reported_at_once_with_its_own_line(tmp_path: Path) -> None:
    err = problems(prepare(tmp_path), """\
        vault: {passphrase_file: secrets/pass}
        watch:
          debounce_ms: 500
        log:
          level: loud
        agent:
          health_url: http://127.0.0.1@attacker.example:80/
        agencies:
          - agency_id: alpha
            roots: [alpha/notes]
          - agency_id: beta
            roots: [alpha/notes/deep]
        """)
    assert err.errors == (
        "watch.debounce_ms: line 3: 500 is out of range [0, 100]",
        "log.level: line 5: 'loud' is not one of debug, info, warning, error",
        "agent.health_url: line 7: user info ('user@') is not allowed in the health URL",
        "agencies[1].roots[0]: line 12: 'alpha/notes/deep' is inside agencies[0].roots[0] "
        "('alpha/notes', root of agency 'alpha')",
    )
    assert str(err).splitlines()[1:5] == list(err.errors)  # one line each, in file order
    assert str(err).splitlines()[5:] == ["warning: agencies[1].roots[0]: line 12: 'alpha/notes/deep' does not "
                                         "exist (it is not created; create it or fix the path)"]


BASE = """\
version: 1
vault: {{passphrase_file: secrets/pass}}
{extra}
agencies:
  - agency_id: alpha
    roots: [{alpha}]
    state_dirs: [{state}]
  - agency_id: beta
    roots: [beta/notes]
"""


def layout(extra: str = "", alpha: str = "alpha/notes", state: str = "alpha/state") -> str:
    return BASE.format(extra=extra, alpha=alpha, state=state)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (layout(alpha="."), "agencies[0].roots[0]: line 6: a root of '.' is the data root itself"),
        (layout(alpha="secrets"), "agencies[0].roots[0]: line 6: 'secrets' overlaps the daemon's own files: "
                                  "is the folder of vault.passphrase_file"),
        (layout(alpha="run"), "agencies[0].roots[0]: line 6: 'run' overlaps the daemon's own files: "
                              "is the folder of control.socket"),
        (layout(alpha="run/tokens"), "agencies[0].roots[0]: line 6: 'run/tokens' overlaps the daemon's own files: "
                                     "is inside the folder of control.socket"),
        (layout(alpha="audit/alpha"), "agencies[0].roots[0]: line 6: 'audit/alpha' overlaps the daemon's own "
                                      "files: is inside audit.dir"),
        (layout(alpha="logs"), "agencies[0].roots[0]: line 6: 'logs' overlaps the daemon's own files: "
                               "is the folder of log.file"),
        (layout(alpha="snapshots"), "is vault.dir ('snapshots')"),
        (layout(alpha="kora_kernel.db"), "is index.database ('kora_kernel.db')"),
        (layout("control: {tokens_dir: beta/notes/tokens}"),
         "control.tokens_dir: line 3: 'beta/notes/tokens' is inside agencies[1].roots[0] ('beta/notes'), a root"),
        (layout("audit:\n  dir: alpha/notes/audit"),
         "audit.dir: line 4: 'alpha/notes/audit' is inside agencies[0].roots[0] ('alpha/notes'), a root"),
        (layout("index: {database: beta/notes/k.db}"), "index.database: line 3: 'beta/notes/k.db' is inside"),
        (layout("log: {file: alpha/notes/logs/d.log}"), "log.file: line 3: 'alpha/notes/logs' is inside"),
        (layout("vault: {dir: alpha/state/snaps}").replace("vault: {passphrase_file: secrets/pass}\n", ""),
         "vault.dir: line 2: 'alpha/state/snaps' is inside agencies[0].state_dirs[0] ('alpha/state'), a state dir"),
        (layout(state="."), "agencies[0].state_dirs[0]: line 7: a state dir of '.' is the data root itself"),
        (layout(state="run"), "agencies[0].state_dirs[0]: line 7: 'run' overlaps the daemon's own files"),
        (layout(state="beta"), "agencies[0].state_dirs[0]: line 7: 'beta' contains agencies[1].roots[0] "
                               "('beta/notes', root of agency 'beta')"),
        (layout(alpha="beta/notes"), "agencies[1].roots[0]: line 9: 'beta/notes' duplicates agencies[0].roots[0]"),
        (layout(alpha="beta"), "agencies[1].roots[0]: line 9: 'beta/notes' is inside agencies[0].roots[0]"),
        (layout(alpha="alpha/notes, alpha/notes/sub"), "agencies[0].roots[1]: line 6: 'alpha/notes/sub' is inside "
                                                       "agencies[0].roots[0] ('alpha/notes', root of the same agency)"),
        (layout(alpha="alpha/notes, alpha/notes"), "agencies[0].roots[1]: line 6: 'alpha/notes' duplicates"),
    ],
)
def test_layout_rules_point_at_the_offending_key(tmp_path: Path, text: str, expected: str) -> None:
    err = problems(prepare(tmp_path, "alpha/notes/sub", "beta"), text)
    assert any(expected in e for e in err.errors), "\n".join(err.errors)


def test_the_layout_of_the_shipped_test_configs_is_accepted(tmp_path: Path) -> None:
    cfg = parse_config(layout(), data_root=prepare(tmp_path, "alpha/state"))
    assert [a.roots for a in cfg.agencies] == [("alpha/notes",), ("beta/notes",)]


def test_symlinked_roots_and_state_dirs_outside_the_data_root_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    root = prepare(tmp_path / "data", "alpha/state")
    (root / "alpha" / "notes").rmdir()
    (root / "alpha" / "notes").symlink_to(outside)  # the root itself is a link
    (root / "beta" / "notes").rmdir()
    (root / "beta" / "link").symlink_to(outside)  # a middle component is a link
    (root / "beta" / "notes").symlink_to(root / "beta" / "link" / "deep")
    (root / "alpha" / "state").rmdir()
    (root / "alpha" / "state").symlink_to("../../outside")  # relative link
    err = problems(root, layout())
    outside_msg = "resolves outside the data root (through a symlink)"
    assert f"agencies[0].roots[0]: line 6: 'alpha/notes' {outside_msg}" in err.errors
    assert f"agencies[1].roots[0]: line 9: 'beta/notes' {outside_msg}" in err.errors
    assert any(e.startswith("agencies[0].state_dirs[0]: line 7: 'alpha/state' resolves outside") for e in err.errors)


def test_a_symlinked_root_into_another_agency_or_the_daemon_folders_is_refused(tmp_path: Path) -> None:
    root = prepare(tmp_path, "audit")
    (root / "alpha" / "notes").rmdir()
    (root / "alpha" / "notes").symlink_to(root / "beta" / "notes")
    (root / "beta" / "notes").rmdir()
    (root / "beta" / "notes").symlink_to(root / "audit")
    err = problems(root, layout())
    text = "\n".join(err.errors)
    assert "agencies[1].roots[0]: line 9: 'beta/notes' duplicates agencies[0].roots[0]" in text
    assert "agencies[1].roots[0]: line 9: 'beta/notes' overlaps the daemon's own files: is audit.dir" in text


def test_a_root_that_does_not_exist_is_a_warning_and_is_not_created(tmp_path: Path) -> None:
    root = prepare(tmp_path)
    cfg = parse_config(layout(alpha="alpha/notes, alpha/typo"), data_root=root)
    assert cfg.warnings == ("agencies[0].roots[1]: line 6: 'alpha/typo' does not exist "
                            "(it is not created; create it or fix the path)",)
    assert not (root / "alpha" / "typo").exists()
    (root / "alpha" / "file").write_text("x")
    err = problems(root, layout(alpha="alpha/file"))
    assert "agencies[0].roots[0]: line 6: 'alpha/file' is not a folder" in err.errors


def test_a_data_root_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "k.yaml"
    cfg.write_text(GOOD)
    with pytest.raises(ConfigError, match="does not exist") as err:
        load_config(cfg, data_root=tmp_path / "typo")
    assert err.value.exit_code == 78
    assert not (tmp_path / "typo").exists()


LOOPBACK_OK = ["http://127.0.0.1:18789", "http://127.0.0.2:1", "http://127.255.255.254:80/base/",
               "http://[::1]:9", "http://localhost:8080", "http://LOCALHOST:8080"]
LOOPBACK_BAD = ["http://127.0.0.1@attacker.example/", "http://127.0.0.1@attacker.example:80/",
                "http://localhost.attacker.example:80/", "http://user:pw@127.0.0.1:80/",
                "https://127.0.0.1:443", "http://127.0.0.1", "http://10.0.0.1:80", "http://127.1:80",
                "http://0.0.0.0:80", "http://[::ffff:127.0.0.1]:80", "ftp://127.0.0.1:21", "http://127.0.0.1:99999",
                "http://127.0.0.1:80/?x=1", "127.0.0.1:80", "http://127.0.0.1 :80", "http://127.0.0.1:80/#f"]


@pytest.mark.parametrize("url", LOOPBACK_OK + LOOPBACK_BAD)
def test_health_url_check_is_the_probers_check(tmp_path: Path, url: str) -> None:
    text = GOOD + f"agent:\n  health_url: '{url}'\n"
    try:
        parse_config(text, data_root=prepare(tmp_path))
        config_ok = True
    except ConfigError as exc:
        assert str(exc).startswith("agent.health_url: line 11: "), str(exc)
        config_ok = False
    try:
        Prober(url, timeout_s=0.1)
        prober_ok = True
    except ConfigError:
        prober_ok = False
    assert config_ok is prober_ok is (url in LOOPBACK_OK)


@pytest.mark.parametrize(
    ("spec", "setup", "expected"),
    [
        ("/etc/shadow", None, "is absolute"),
        ("../pass", None, "contains '..'"),
        ("secrets/nope", None, "'secrets/nope' does not exist: create it (mode 0600)"),
        ("secrets", None, "'secrets' is not a regular file"),
        ("secrets/pass", 0o644, "is readable by group or others (mode 0644): chmod 600 it"),
        ("secrets/pass", 0o640, "(mode 0640)"),
        ("secrets/link", "link", "resolves outside the data root"),
        ("secrets/empty", "empty", "is empty"),
        ("'credential:'", None, "bad credential name"),
        ("credential:vault", None, "needs $CREDENTIALS_DIRECTORY"),
    ],
)
def test_passphrase_file_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str,
                               setup: int | str | None, expected: str) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    root = prepare(tmp_path / "data")
    if isinstance(setup, int):
        (root / spec).chmod(setup)
    elif setup == "link":
        (tmp_path / "elsewhere").write_text("x")
        (tmp_path / "elsewhere").chmod(0o600)
        (root / spec).symlink_to(tmp_path / "elsewhere")
    elif setup == "empty":
        (root / spec).touch(mode=0o600)
    err = problems(root, GOOD.replace("secrets/pass", spec))
    assert any(e.startswith("vault.passphrase_file: line 5: ") and expected in e for e in err.errors), err.errors


def test_passphrase_file_may_be_missing_when_the_vault_is_off_and_a_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = prepare(tmp_path / "data")
    off = GOOD.replace("  passphrase_file: secrets/pass", "  enabled: false\n  passphrase_file: secrets/nope")
    assert not parse_config(off, data_root=root).vault.enabled
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "vault").write_text("s3cret\n")
    (creds / "vault").chmod(0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = parse_config(GOOD.replace("secrets/pass", "credential:vault"), data_root=root)
    assert cfg.vault.passphrase_file == "credential:vault"
    (creds / "vault").unlink()
    with pytest.raises(ConfigError, match="'credential:vault' does not exist"):
        parse_config(GOOD.replace("secrets/pass", "credential:vault"), data_root=root)


def test_agent_command_must_be_an_executable(tmp_path: Path) -> None:
    root = prepare(tmp_path, "agent")
    (root / "agent" / "plain").write_text("#!/bin/sh\n")
    (root / "agent" / "plain").chmod(0o644)
    agent = "agent:\n  enabled: true\n  agency_id: demo\n  command: {cmd}\n"
    for cmd, expected in [
        ("[no-such-agent-binary-x]", "agent.command[0]: line 13: 'no-such-agent-binary-x' is not found on PATH"),
        ("[./plain]", "agent.command[0]: line 13: './plain' is not executable"),
        ("[./missing]", "agent.command[0]: line 13: './missing' does not exist or is not a file"),
        ("[]", "agent.command: line 13: the agent command is empty"),
    ]:
        err = problems(root, GOOD + agent.format(cmd=cmd))
        assert err.errors == (expected,)
    cfg = parse_config(GOOD + agent.format(cmd=f"[{sys.executable}, -V]"), data_root=root)
    assert cfg.agent.enabled


def test_check_config_prints_every_error_one_line_each_and_exits_78(tmp_path: Path) -> None:
    root = prepare(tmp_path / "data")
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(layout("audit: {dir: beta/notes/audit}", alpha="."))
    res = cli("-c", str(cfg), "--data-root", str(root), "check-config")
    assert res.returncode == 78, res.stderr
    lines = res.stderr.splitlines()
    assert lines[0] == f"koradaemon: error: 2 errors in {cfg}:"
    assert lines[1].startswith("audit.dir: line 3: 'beta/notes/audit' is inside agencies[1].roots[0]")
    assert lines[2].startswith("agencies[0].roots[0]: line 6: a root of '.' is the data root itself")
    assert "Traceback" not in res.stderr and res.stdout == ""


def test_check_config_prints_warnings_and_exits_0(tmp_path: Path) -> None:
    root = prepare(tmp_path / "data", "alpha/state")
    cfg = tmp_path / "warn.yaml"
    cfg.write_text(layout(alpha="alpha/notes, alpha/typo"))
    res = cli("-c", str(cfg), "--data-root", str(root), "check-config")
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == ["warning: agencies[0].roots[1]: line 6: 'alpha/typo' does not exist "
                                       "(it is not created; create it or fix the path)"]
    assert "configuration OK" in res.stdout and "1 warning" in res.stdout


def test_check_config_refuses_a_missing_data_root(tmp_path: Path) -> None:
    cfg = tmp_path / "k.yaml"
    cfg.write_text(GOOD)
    res = cli("-c", str(cfg), "--data-root", str(tmp_path / "typo"), "check-config")
    assert res.returncode == 78 and "does not exist" in res.stderr
    assert not (tmp_path / "typo").exists()


def readme_block(after: str) -> str:
    readme = (REPO / "README.md").read_text()
    rest = readme[readme.index(after):]
    return rest.split("```\n", 2)[1]


def test_example_config_passes_check_config_as_the_readme_runs_it(tmp_path: Path) -> None:
    """The README's commands, run literally by bash in a scratch folder that holds the repo's etc/:
    prepare a data root as scripts/run does, then `koradaemon -c etc/koradaemon.example.yaml
    --data-root demo-data check-config`."""
    block = readme_block("Try the example on a data root prepared like `scripts/run` does")
    assert "koradaemon -c etc/koradaemon.example.yaml --data-root demo-data check-config" in block
    (tmp_path / "etc").symlink_to(REPO / "etc")
    env = {k: v for k, v in os.environ.items() if k not in ("KORA_DATA_ROOT", "STATE_DIRECTORY")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True,
                         text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert res.returncode == 0, res.stderr
    first = res.stdout.splitlines()[0]
    assert res.stderr == "" and first.startswith("configuration OK: ") and "etc/koradaemon.example.yaml" in first
    assert oct((tmp_path / "demo-data" / "secrets" / "vault-passphrase").stat().st_mode & 0o777) == "0o600"
    scripts_run = (REPO / "scripts" / "run").read_text()  # the README's preparation is what scripts/run does
    assert 'mkdir -p "$DATA/demo/notes" "$DATA/agent/state" "$DATA/secrets"' in scripts_run
    assert '(umask 077; python -c' in scripts_run and '"$DATA/secrets/vault-passphrase"' in scripts_run


def test_the_example_config_without_a_passphrase_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "demo" / "notes").mkdir(parents=True)
    res = cli("-c", "etc/koradaemon.example.yaml", "--data-root", str(tmp_path), "check-config")
    assert res.returncode == 78
    assert res.stderr.startswith("koradaemon: error: vault.passphrase_file: line ")
    assert "'secrets/vault-passphrase' does not exist" in res.stderr


def test_missing_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"agencies:\n  - agency_id: \xff\n")
    with pytest.raises(ConfigError, match=r"cannot read.*not UTF-8"):
        load_config(bad)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(fifo)


def test_run_never_creates_a_missing_root_and_logs_the_warning(tmp_path: Path) -> None:
    from conftest import BASE_CONFIG, DaemonProc

    (tmp_path / "koradaemon.yaml").write_text(
        BASE_CONFIG.format(vault="true", extra="").replace("roots: [alpha/notes]", "roots: [alpha/notes, alpha/typo]"))
    d = DaemonProc(tmp_path)
    try:
        st = d.start().wait_ready()
        assert st["agencies"]["alpha"]["degraded_roots"] == {"alpha/typo": "the root does not exist: not watched"}
        assert not (tmp_path / "alpha" / "typo").exists()
        warnings = [e for e in d.log_events() if e.get("event") == "config_warning"]
        assert [w["problem"] for w in warnings] == [
            "agencies[0].roots[1]: line 10: 'alpha/typo' does not exist (it is not created; create it or fix the path)"]
        assert d.stop() == 0
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


@pytest.mark.parametrize("command", [["run"], ["status"], ["search", "--agency", "demo", "x"]])
def test_a_missing_data_root_is_refused_and_never_created(tmp_path: Path, command: list[str]) -> None:
    cfg = tmp_path / "k.yaml"
    cfg.write_text(GOOD)
    res = cli("-c", str(cfg), "--data-root", str(tmp_path / "typo"), *command)
    assert res.returncode == 78
    assert res.stderr.count("\n") == 1 and f"data root {tmp_path / 'typo'} (from --data-root) does not exist" \
        in res.stderr
    assert not (tmp_path / "typo").exists()


def test_a_passphrase_file_the_daemon_user_cannot_read_is_an_error(unprivileged_user: tuple[int, int]) -> None:
    """load_config in a forked child that dropped to the created user (this checkout's interpreter lives
    under root's home, so the user cannot exec it; the fork keeps the imported code)."""
    import tempfile

    uid, gid = unprivileged_user
    with tempfile.TemporaryDirectory(prefix="kcfg-") as scratch:  # /tmp/pytest-of-root is 0700
        base = Path(scratch)
        base.chmod(0o755)
        root = prepare(base / "data")
        for p in [root, *root.rglob("*")]:
            if p.name != "pass":
                os.chown(p, uid, gid)  # the data root belongs to the user; the passphrase stays root's 0600
        cfg = base / "k.yaml"
        cfg.write_text(GOOD)
        cfg.chmod(0o644)
        load_config(cfg, data_root=root)  # as root it passes; and every lazy import is loaded before the fork

        def validate_as_user() -> str:
            try:
                load_config(cfg, data_root=root)
            except ConfigError as exc:
                return str(exc)
            return "no error"

        out = run_as_user(uid, gid, validate_as_user)
        assert "vault.passphrase_file: line 5: 'secrets/pass' is not readable by this user" in out, out


def test_client_commands_skip_the_checks_of_the_daemons_environment(tmp_path: Path) -> None:
    """Under systemd the passphrase is a credential and the agent's PATH is the unit's: an operator's
    `status` from a shell must not fail on them, while check-config and run (the daemon's view) do."""
    root = prepare(tmp_path / "data")
    cfg = tmp_path / "k.yaml"
    cfg.write_text(GOOD.replace("secrets/pass", "credential:vault") +
                   "agent:\n  enabled: true\n  agency_id: demo\n  command: [no-such-agent-binary-x]\n")
    res = cli("-c", str(cfg), "--data-root", str(root), "check-config")
    assert res.returncode == 78
    assert "vault.passphrase_file: line 5: 'credential:vault' needs $CREDENTIALS_DIRECTORY" in res.stderr
    assert "agent.command[0]: line 13: 'no-such-agent-binary-x' is not found on PATH" in res.stderr
    res = cli("-c", str(cfg), "--data-root", str(root), "status", "--json")
    assert "vault.passphrase_file" not in res.stderr and "agent.command" not in res.stderr, res.stderr
    assert res.returncode != 78 and "Traceback" not in res.stderr
    with pytest.raises(ConfigError, match="agencies"):  # the layout checks still apply to clients
        parse_config(GOOD.replace("roots: [notes, docs/x]", "roots: ['.']"), data_root=root, runtime_checks=False)


def test_agent_folders_stay_out_of_other_agencies_and_the_daemons_files(tmp_path: Path) -> None:
    root = prepare(tmp_path, "alpha/state")
    agent = (f"agent:\n  enabled: true\n  agency_id: alpha\n  command: [{sys.executable}]\n"
             "  workdir: {workdir}\n  state_dir: {state}\n")
    err = problems(root, layout(agent.format(workdir="alpha/work", state="beta/notes/state")))
    assert err.errors == ("agent.state_dir: line 8: 'beta/notes/state' is inside agencies[1].roots[0] "
                          "('beta/notes', root of agency 'beta')",)
    err = problems(root, layout(agent.format(workdir="run", state="alpha/state")))
    assert err.errors == ("agent.workdir: line 7: 'run' overlaps the daemon's own files: is the folder of "
                          "control.socket ('run'); contains control.tokens_dir ('run/tokens'); is the run folder "
                          "(lock and pid files) ('run')",)
    cfg = parse_config(layout(agent.format(workdir="alpha/work", state="alpha/state")), data_root=root)
    assert cfg.agent.state_dir == "alpha/state"
