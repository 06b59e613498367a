"""Every subcommand with bad input, as a real subprocess: one clear line on stderr, the documented code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import kora, make_index, one_error_line, tree_state

CONFIG = """\
version: 1
vault: {enabled: true, passphrase_file: secrets/pass, auto_interval_s: 0}
agencies:
  - agency_id: alpha
    roots: [alpha/notes]
    state_dirs: [alpha/state]
  - agency_id: beta
    roots: [beta/notes]
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "data"
    for d in ("alpha/notes", "alpha/state", "beta/notes", "secrets"):
        (r / d).mkdir(parents=True)
    (r / "koradaemon.yaml").write_text(CONFIG)
    (r / "secrets" / "pass").write_text("a passphrase for tests\n")
    make_index(r)
    return r


# (arguments after "-c CONFIG", expected exit code, a fragment the one line must hold)
CASES = [
    ([], 64, "required: COMMAND"),
    (["bogus"], 64, "invalid choice: 'bogus'"),
    (["run", "--nope"], 64, "unrecognized arguments: --nope"),
    (["status", "--agency", "zz"], 64, "unknown agency 'zz'"),
    (["status", "--json", "--bogus"], 64, "unrecognized arguments"),
    (["search"], 64, "required: QUERY"),
    (["search", "--agency", "alpha", "--limit", "0", "x"], 64, "out of range 1..1000"),
    (["search", "--agency", "alpha", "--limit", "1001", "x"], 64, "out of range 1..1000"),
    (["search", "--agency", "alpha", "--limit", "ten", "x"], 64, "not a whole number"),
    (["search", "x"], 64, "name the agency with --agency"),
    (["files", "--agency", "nope"], 64, "unknown agency 'nope'"),
    (["files", "--agency", "alpha", "--offset", "-1"], 64, "--offset"),
    (["show", "--agency", "alpha", "alpha/notes/missing.md"], 65, "is not in the index"),
    (["show", "--agency", "alpha", "alpha/notes/missing.md:0"], 64, "line numbers start at 1"),
    (["show", "--agency", "alpha", "alpha/notes/a.md@0+10"], 65, "no indexed chunk"),
    (["tail", "--agency", "alpha"], 69, "not running"),
    (["watch-events"], 64, "name the agency"),
    (["snapshot", "--agency", "nope"], 64, "unknown agency"),
    (["snapshots"], 64, "name the agency"),
    (["restore", "--agency", "alpha", "--snapshot", "nope"], 64, "no snapshot 'nope'; existing: none"),
    (["audit"], 64, "required: ACTION"),
    (["audit", "verify", "--agency", "zz"], 64, "unknown agency"),
    (["audit", "unlock", "--agency", "alpha"], 64, "required: --reason"),
    (["audit", "unlock", "--agency", "alpha", "--reason", "why"], 64, "is not in lockdown"),
    (["check-config", "--extra"], 64, "unrecognized arguments"),
    (["print-unit", "bogus"], 64, "invalid choice: 'bogus'"),
    (["init"], 64, "--data-root DIR"),
    (["init", "--user", "--system"], 64, "not allowed with argument"),
]


@pytest.mark.parametrize(("args", "code", "fragment"), CASES, ids=[" ".join(c[0]) or "(none)" for c in CASES])
def test_bad_input_gives_one_line_and_the_documented_code(root: Path, args: list[str], code: int,
                                                           fragment: str) -> None:
    before = tree_state(root)
    res = kora("-c", str(root / "koradaemon.yaml"), *args, cwd=root)
    line = one_error_line(res)
    assert res.returncode == code, f"{args}: {res.returncode} {line}"
    assert fragment in line, line
    assert tree_state(root) == before, "a failed command changed the data root"


def test_global_options_after_the_subcommand(root: Path) -> None:
    before = kora("-c", str(root / "koradaemon.yaml"), "--data-root", str(root), "status", "--json")
    after = kora("status", "--json", "-c", str(root / "koradaemon.yaml"), "--data-root", str(root))
    mixed = kora("--data-root", str(root), "status", "--json", "--config", str(root / "koradaemon.yaml"))
    for res in (before, after, mixed):
        assert res.returncode == 69, res.stderr  # not running
        assert json.loads(res.stdout)["running"] is False


def test_missing_config_and_data_root_typos_create_nothing(tmp_path: Path, root: Path) -> None:
    res = kora("-c", str(tmp_path / "none.yaml"), "status")
    assert res.returncode == 78 and "does not exist" in one_error_line(res)
    typo = tmp_path / "dta"
    res = kora("-c", str(root / "koradaemon.yaml"), "status", "--data-root", str(typo))
    assert res.returncode == 78 and f"data root {typo}" in one_error_line(res)
    res = kora("-c", str(root / "koradaemon.yaml"), "run", "--data-root", str(typo))
    assert res.returncode == 78 and "does not exist" in one_error_line(res)
    assert not typo.exists()
    env_typo = kora("-c", str(root / "koradaemon.yaml"), "search", "--agency", "alpha", "x",
                    env={"KORA_DATA_ROOT": str(typo)})
    assert env_typo.returncode == 78 and "$KORA_DATA_ROOT" in one_error_line(env_typo)
    assert not typo.exists()


def test_a_data_root_without_index_is_a_clear_error_and_stays_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "koradaemon.yaml").write_text(CONFIG)
    for args, code in ((["status"], 69), (["search", "--agency", "alpha", "x"], 69),
                       (["files", "--agency", "beta"], 69), (["audit", "verify"], 69),
                       (["snapshots", "--agency", "alpha"], 69),
                       (["audit", "unlock", "--agency", "alpha", "--reason", "x"], 69),
                       (["snapshot", "--agency", "alpha"], 69)):
        res = kora(*args, cwd=empty)  # ./koradaemon.yaml is found
        assert res.returncode == code, (args, res.stderr)
        assert "koradaemon has never run on the data root" in one_error_line(res)
    assert sorted(p.name for p in empty.iterdir()) == ["koradaemon.yaml"]


def test_json_errors_are_json_on_stderr(root: Path) -> None:
    res = kora("-c", str(root / "koradaemon.yaml"), "search", "--json", "--agency", "zz", "x")
    assert res.returncode == 64 and res.stdout == ""
    body = json.loads(one_error_line(res))
    assert body["error"] == "usage" and body["exit_code"] == 64 and "zz" in body["message"]
    res = kora("-c", str(root / "koradaemon.yaml"), "search", "--json", "--limit", "0", "x")
    body = json.loads(one_error_line(res))
    assert res.returncode == 64 and body["error"] == "usage" and "out of range" in body["message"]


def _closed_pipe_run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """Run with stdout a pipe whose reader is already gone: every write fails with EPIPE."""
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run([sys.executable, "-m", "koradaemon", *args], stdout=w, stderr=subprocess.PIPE,
                              cwd=cwd, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        os.close(w)


def test_a_closed_pipe_is_not_a_traceback(root: Path) -> None:
    for i in range(30):
        (root / "alpha" / "notes" / f"n{i}.md").write_text(f"note {i}\n")
    for args in (["status"], ["search", "--agency", "alpha", "note"], ["files", "--agency", "alpha"],
                 ["--help"], ["print-unit", "systemd"]):
        res = _closed_pipe_run(["-c", str(root / "koradaemon.yaml"), *args], root)
        assert res.stderr == b"", f"{args}: {res.stderr.decode()}"
    status = _closed_pipe_run(["-c", str(root / "koradaemon.yaml"), "status"], root)
    assert status.returncode == 69, "the health code does not depend on the reader"


def test_permission_and_not_a_directory_are_one_line(tmp_path: Path, root: Path) -> None:
    as_file = tmp_path / "file-root"
    as_file.write_text("not a folder")
    res = kora("-c", str(root / "koradaemon.yaml"), "--data-root", str(as_file), "run")
    assert res.returncode == 78 and "is not a folder" in one_error_line(res)
    res = kora("-c", str(root), "status")
    assert res.returncode == 78 and "is a folder" in one_error_line(res)
