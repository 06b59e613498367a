"""Bounded config parsing: hostile and mutated files give one ConfigError (exit 78) quickly, never a
traceback, through load_config, `koradaemon check-config` as a subprocess, and SIGHUP to a running daemon."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import BASE_CONFIG, DaemonProc, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from koradaemon.config import load_config
from koradaemon.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = (REPO / "etc" / "koradaemon.example.yaml").read_text()
TEST_CONFIG = BASE_CONFIG.format(vault="true", extra="")
OWN_CONFIG = """\
version: 1
vault: {passphrase_file: secrets/vault-passphrase}
agencies:
  - agency_id: alpha
    roots: [alpha/notes, alpha/docs]
    ignore: ["*.tmp", "build/"]
    state_dirs: [alpha/state]
"""
SEEDS = [EXAMPLE, TEST_CONFIG, OWN_CONFIG]


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["bogus:", "  a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * width)
        lines.append(f"  a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


HOSTILE = {
    "alias bomb under an unknown key": (alias_bomb() + "agencies: [{agency_id: a}]\n",
                                        "bogus.a0: line 2: YAML anchors"),
    "alias": ("x: &a 1\ny: *a\n", "x: line 1: YAML anchors"),
    "nesting 50k deep (flow)": ("agencies: " + "[" * 50_000 + "]" * 50_000 + "\n", "nested deeper than"),
    "nesting deep (block)": ("".join(" " * i + f"k{i}:\n" for i in range(200)) + " " * 200 + "v: 1\n",
                             "nested deeper than"),
    "5000-digit integer": ("watch:\n  queue_max: " + "9" * 5000 + "\n", "watch.queue_max: line 2: a value longer"),
    "400-digit integer": ("watch:\n  queue_max: " + "9" * 400 + "\n",
                          "watch.queue_max: line 2: the number is too large"),
    "long string": ("log:\n  file: " + "a" * 100_000 + "\n", "log.file: line 2: a value longer than"),
    "NUL": ("version: 1\nlog:\n  level: in\x00fo\n", "log.level: line 3: the character U+0000 is not allowed"),
    "control character": ("version: 1\nagencies:\n  - agency_id: a\x01b\n",
                          "agencies[0].agency_id: line 3: the character U+0001 is not allowed"),
    "escape in quotes": ('version: 1\nlog:\n  file: "logs/\\0x"\n', "log.file: line 3: path: contains a NUL byte"),
    "bad timestamp": ("version: 2001-13-45\n", "version: line 1: unsupported YAML type"),
    "bad int": ("version: !!int 1x\n", "version: line 1: cannot read the value"),
    "python tag": ("version: !!python/object/apply:os.system [true]\n", "version: line 1: unsupported YAML type"),
    "binary": ("log: {file: !!binary AAAA}\n", "log.file: line 1: unsupported YAML type"),
    "bad glob": ("agencies:\n  - agency_id: a\n    roots: [n]\n    ignore: ['[z-a]']\n",
                 "agencies[0].ignore[0]: line 4: bad ignore pattern '[z-a]'"),
    "sexagesimal": ("watch:\n  queue_max: " + ":".join(["59"] * 1000) + "\n", "watch.queue_max: line 2"),
    "float overflow": ("shutdown_timeout_s: 1e999\n", "shutdown_timeout_s: line 1: expected a number"),
    "too large": ("# " + "x" * 300_000 + "\n", "larger than 256 KiB"),
    "too many values": ("".join(f"k{i}: {i}\n" for i in range(20_000)), "more than 2000 values"),
    "key not a string": ("? [a, b]\n: 1\n", "config: line 1: keys must be strings"),
    "two documents": ("version: 1\n---\nversion: 1\n", "malformed YAML"),
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    for d in ("demo/notes", "agent/state", "alpha/notes", "alpha/state", "beta/notes"):
        (root / d).mkdir(parents=True)
    (root / "secrets").mkdir(mode=0o700)
    for name in ("vault-passphrase", "pass"):
        (root / "secrets" / name).write_text("fuzz passphrase\n")
        (root / "secrets" / name).chmod(0o600)
    return root


def load_or_error(path: Path, root: Path) -> tuple[str, float]:
    """'ok' or the ConfigError's text, and the seconds it took. Anything else raised fails the test."""
    t0 = time.perf_counter()
    try:
        load_config(path, data_root=root)
        out = "ok"
    except ConfigError as exc:
        assert exc.exit_code == 78
        out = str(exc)
    return out, time.perf_counter() - t0


def run_cli(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    drop = ("KORA_DATA_ROOT", "STATE_DIRECTORY", "CREDENTIALS_DIRECTORY")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "koradaemon", *args], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, env=env, timeout=60)
    return res, time.perf_counter() - t0


@pytest.fixture(scope="module")
def cli_baseline(data_root: Path) -> float:
    """Seconds for `check-config` of the shipped example (start-up, imports, a normal check), measured
    in this run: what a hostile file costs beyond it is what the limits bound."""
    example = REPO / "etc" / "koradaemon.example.yaml"
    runs = [run_cli("-c", str(example), "--data-root", str(data_root), "check-config") for _ in range(3)]
    assert all(res.returncode == 0 for res, _ in runs), runs[0][0].stderr
    return statistics.median(seconds for _, seconds in runs)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_config_is_one_config_error_naming_key_and_line(tmp_path: Path, data_root: Path,
                                                               cli_baseline: float, name: str) -> None:
    text, expected = HOSTILE[name]
    path = tmp_path / "hostile.yaml"
    path.write_text(text, encoding="utf-8")
    message, seconds = load_or_error(path, data_root)
    assert expected in message
    assert seconds < 1.0, f"{name}: load_config took {seconds:.2f} s"
    res, elapsed = run_cli("-c", str(path), "--data-root", str(data_root), "check-config")
    assert res.returncode == 78, res.stderr
    assert "Traceback" not in res.stderr and expected in res.stderr
    assert res.stderr.startswith("koradaemon: error: ")
    assert elapsed - cli_baseline < 1.0, f"{name}: check-config took {elapsed:.2f} s (start-up {cli_baseline:.2f} s)"


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_config_with_the_pure_python_parser(tmp_path: Path, data_root: Path,
                                                    monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The same limits and messages where PyYAML has no libyaml (the loader falls back to Python)."""
    from koradaemon import config_yaml

    monkeypatch.setattr(config_yaml, "_CParser", None)
    assert isinstance(config_yaml.make_loader("a: 1"), config_yaml._PyLoader)
    text, expected = HOSTILE[name]
    path = tmp_path / "hostile.yaml"
    path.write_text(text, encoding="utf-8")
    message, seconds = load_or_error(path, data_root)
    assert expected in message
    assert seconds < 1.0, f"{name}: load_config took {seconds:.2f} s"


SNIPPETS = [
    alias_bomb(4, 4), "x: &a [1]\n", "y: *a\n", "[" * 300, "{" * 300, "9" * 400, "a" * 5000, "\x00", "\x01",
    "\x1b[0m", "\ufeff", "\t", "'[z-a]'", "- '[z-a]'\n", "!!python/name:os.system", "!!binary AAAA", "2001-13-45",
    "1e999", "-.inf", ".nan", "0x" + "f" * 40, "~", "null", "? ", ": ", "- ", "&x ", "*x", "|\n", ">\n", "%YAML 1.1\n",
    "---\n", "...\n", "'", '"', "#", "roots: ['.']", "roots: []", "state_dirs: ['.']", "dir: demo/notes/audit",
    "health_url: http://127.0.0.1@attacker.example/", "passphrase_file: /etc/shadow", "command: [nope-x]",
    "enabled: true", "../", "/", "\u2028", "\ud7ff", "\U0001f600",
]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "delete", "replace_line", "dup_line", "swap"]))
        lines = text.splitlines(keepends=True) or [""]
        pos = draw(st.integers(0, len(text)))
        if op == "insert":
            piece = draw(st.one_of(st.sampled_from(SNIPPETS), st.text(max_size=20)))
            text = text[:pos] + piece + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 40)):]
        else:
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if op == "replace_line":
                indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
                lines[i] = indent + draw(st.sampled_from(SNIPPETS)) + "\n"
            elif op == "dup_line":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(text=mutated())
def test_mutated_configs_load_or_fail_cleanly(tmp_path: Path, data_root: Path, text: str) -> None:
    path = tmp_path / "mutated.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    message, seconds = load_or_error(path, data_root)
    assert seconds < 1.0, f"load_config took {seconds:.2f} s"
    assert message == "ok" or message.strip(), message


# One CLI process per example: the same mutations run 300 times in process above; this checks the CLI's
# wrapping (exit 0 or 78, one line, no traceback), which 10 examples exercise.
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(text=mutated())
def test_mutated_configs_through_check_config(tmp_path: Path, data_root: Path, cli_baseline: float,
                                              text: str) -> None:
    path = tmp_path / "mutated.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    res, elapsed = run_cli("-c", str(path), "--data-root", str(data_root), "check-config")
    assert res.returncode in (0, 78), res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    if res.returncode == 78:
        assert res.stderr.startswith("koradaemon: error: ") and res.stdout == ""
    assert elapsed - cli_baseline < 1.0, f"check-config took {elapsed:.2f} s (start-up {cli_baseline:.2f} s)"


def test_sighup_with_hostile_configs_keeps_the_running_configuration(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path)
    good = d.config.read_text()
    try:
        d.start()
        (d.root / "alpha" / "notes" / "kept.md").write_text("the running configuration stays\n")
        wait_for(lambda: d.search("running"), 20, what="indexed before the reloads")
        def events(name: str) -> int:
            return [e.get("event") for e in d.log_events()].count(name)

        def sighup(text: str, event: str, n: int) -> float:
            """Install ``text`` as the config, SIGHUP, wait for the n-th ``event``; seconds it took."""
            tmp = d.config.with_suffix(".new")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(d.config)
            t0 = time.monotonic()
            d.signal(signal.SIGHUP)
            wait_for(lambda: events(event) >= n, 20, 0.01, f"{event} {n}")
            assert d.proc is not None and d.proc.poll() is None, d.log.read_text()[-3000:]
            return time.monotonic() - t0

        baseline = sighup(good, "config_reloaded", 1)  # the same good file: reload round trip in this run
        hostile = [HOSTILE[k][0] for k in ("alias bomb under an unknown key", "NUL", "nesting 50k deep (flow)",
                                           "5000-digit integer", "bad glob", "too large")]
        hostile.append(good.replace("roots: [beta/notes]", "roots: [alpha/notes/sub]"))  # overlapping roots
        hostile.append(good.replace("roots: [alpha/notes]", "roots: ['.']"))
        hostile.append(good.replace("passphrase_file: secrets/pass", "passphrase_file: /etc/shadow"))
        for n, text in enumerate(hostile, start=1):
            seconds = sighup(text, "reload_rejected", n)
            assert seconds - baseline < 1.0, f"rejection {n} took {seconds:.2f} s (a good reload {baseline:.2f} s)"
        st = d.status()
        assert st is not None and st["ready"]
        assert [h["path"] for h in d.search("running")] == ["kept.md"]
        assert "Traceback" not in d.log.read_text(errors="replace")
        assert d.stop() == 0
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    d = DaemonProc(tmp_path_factory.mktemp("daemon"))
    try:
        d.start()
        yield d
        assert d.stop() == 0
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(text=mutated())
def test_mutated_configs_through_sighup(running: DaemonProc, text: str) -> None:
    """Each mutated file is reloaded or rejected, never kills the daemon; then the good file goes back."""
    d = running
    good = d.config.read_text()  # every example ends by putting the good file back

    def counts() -> tuple[int, int]:
        names = [e.get("event") for e in d.log_events()]
        return names.count("config_reloaded"), names.count("reload_rejected")

    for content in (text, good):
        before = counts()
        tmp = d.config.with_suffix(".new")
        tmp.write_text(content, encoding="utf-8", errors="surrogatepass")
        tmp.replace(d.config)
        d.signal(signal.SIGHUP)
        wait_for(lambda before=before: counts() != before, 20, 0.01, "reload handled")
        assert d.proc is not None and d.proc.poll() is None, d.log.read_text()[-3000:]
    st = d.status()
    assert st is not None and st["ready"] and "Traceback" not in d.log.read_text(errors="replace")
