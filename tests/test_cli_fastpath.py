"""The CLI's fast path for `search` and `status`: the plain argument reader gives argparse's result or
steps aside, the `_json`/str-method replacements agree with json and re, and a call through a real
socket loads nothing beyond the package's client modules and two C modules."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koradaemon.cli import jsonlite, quickconf
from koradaemon.cli.fastargs import parse_fast
from koradaemon.cli.parser import build_parser
from koradaemon.cli.render_search import squeeze
from koradaemon.cli.wire import timeval

REPO = Path(__file__).resolve().parent.parent


PARSER = build_parser()  # every command's options (what a call that does not take the fast path builds)


def argparse_result(argv: list[str]) -> dict[str, object] | None:
    """What the full parser makes of ``argv`` (None: it printed help, the version or an error)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return vars(PARSER.parse_args(argv))
    except SystemExit:
        return None


PLAIN = [
    ["search", "sorrel"],
    ["search", "--agency", "demo", "invoice 2024"],
    ["-c", "k.yaml", "--data-root", "d", "search", "--agency=demo", "q", "--limit", "50", "--offset=10"],
    ["search", "q", "--fts", "--mode", "vector", "--color", "never", "--json", "-c", "a.yaml", "-c", "b.yaml"],
    ["--config=k.yaml", "search", "", "--limit", "1000"],
    ["status"],
    ["status", "--agency", "demo", "--json"],
    ["--data-root", "d", "status", "--data-root", "e", "--config", "k.yaml"],
]
ARGPARSE_ONLY = [
    [], ["--help"], ["search", "-h"], ["status", "--help"], ["--version"], ["files", "--agency", "demo"],
    ["search"], ["search", "a", "b"], ["search", "--", "-x"], ["search", "-x"], ["search", "--ag", "demo", "q"],
    ["search", "--limit", "0", "q"], ["search", "--limit", "1001", "q"], ["search", "--limit", "ten", "q"],
    ["search", "--offset", "-1", "q"], ["search", "--mode", "fuzzy", "q"], ["search", "q", "--agency"],
    ["status", "--json=yes"], ["status", "--agency", "--json"], ["status", "extra"], ["-c=k.yaml", "status"],
    ["--json", "status"], ["status", "--limit", "5"], ["-x", "status"],
]


@pytest.mark.parametrize("argv", PLAIN, ids=" ".join)
def test_plain_command_lines_are_read_without_argparse_and_as_argparse_reads_them(argv: list[str]) -> None:
    fast = parse_fast(argv)
    assert fast is not None, "a plain search/status command line takes the fast path"
    assert vars(fast) == argparse_result(argv)


@pytest.mark.parametrize("argv", ARGPARSE_ONLY, ids=" ".join)
def test_help_errors_and_other_commands_are_left_to_argparse(argv: list[str]) -> None:
    assert parse_fast(argv) is None


WORDS = ["search", "status", "files", "q", "two words", "", "-", "-5", "--", "-h", "--help", "--version",
         "--agency", "--agency=demo", "--agency=", "demo", "--limit", "--limit=7", "5", "0", "1000", "1001", " 7",
         "x", "--offset", "--offset=0", "--fts", "--fts=1", "--mode", "vector", "hybrid", "fuzzy", "--color",
         "always", "--json", "-c", "-ck.yaml", "-c=k.yaml", "--config", "--config=k.yaml", "--conf", "k.yaml",
         "--data-root", "--data-root=d", "d"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=9))
def test_the_fast_reader_never_disagrees_with_argparse(argv: list[str]) -> None:
    fast = parse_fast(argv)
    if fast is not None:
        assert vars(fast) == argparse_result(argv), argv


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=150, deadline=None)
@given(JSON)
def test_jsonlite_writes_and_reads_what_json_does(value: object) -> None:
    pretty = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    assert jsonlite.dumps(value, indent=2, sort_keys=True) == pretty
    assert jsonlite.dumps(value) == json.dumps(value, ensure_ascii=False)
    try:
        compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        with pytest.raises(ValueError):
            jsonlite.dumps(value, compact=True, allow_nan=False)
    else:
        assert jsonlite.dumps(value, compact=True, allow_nan=False) == compact
    for text in (pretty, f" \r\n{pretty}\t\n"):
        assert _same(jsonlite.loads(text.encode()), json.loads(text.encode()))


def test_jsonlite_hands_anything_unusual_to_json() -> None:
    assert jsonlite.dumps({1: (1.5, True), "d": {"k"}}, sort_keys=False) == '{"1": [1.5, true], "d": "{\'k\'}"}'
    assert jsonlite.loads(b'\xef\xbb\xbf{"bom": 1}') == {"bom": 1}
    for bad in (b"", b"{", b'{"a": 1} x', b'"\\q"', b'[1,]', b"\xff", b"nul"):
        with pytest.raises(ValueError):
            jsonlite.loads(bad)
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular"):
        jsonlite.dumps(loop)


def _same(a: object, b: object) -> bool:
    """Equal, NaN included."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


TEXT = st.text(alphabet=st.sampled_from([*"aZ0_./-:+,@ \t[]{}é#'\"", "\u3000", "\x85", "\u212a", "\u0131"]),
               max_size=12)


@settings(max_examples=300, deadline=None)
@given(TEXT, st.integers(0, 12))
def test_quickconf_patterns_are_the_regular_expressions_they_replace(text: str, pos: int) -> None:
    key = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*):(?:\s+|$)(.*)", text)
    assert quickconf.key_value(text) == (key.groups() if key else None)
    assert quickconf.plain(text) == bool(re.fullmatch(r"[A-Za-z0-9_./-][A-Za-z0-9_./ :+,@-]*", text))
    assert quickconf.safe_rel(text) == bool(re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*", text))
    assert quickconf.agency_id(text) == bool(re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", text))
    pos = min(pos, len(text))
    scalar = re.compile(r"[^,\[\]{}:]+(?::[^\s,\[\]{}][^,\[\]{}:]*)*").match(text, pos)
    assert quickconf.scalar_end(text, pos) == (scalar.end() if scalar else pos)


def test_squeeze_is_re_sub_whitespace_over_every_code_point() -> None:
    every_space = "".join(re.findall(r"\s", "".join(map(chr, range(sys.maxunicode + 1)))))
    assert "".join(ch for ch in every_space if ch.isspace()) == every_space
    for text in ("", " ", "a", "  a \t\n b\u3000", "\x85x\x1c", "a" + every_space + "b", every_space):
        assert squeeze(text) == re.sub(r"\s+", " ", text)


def test_timeval_is_struct_timeval() -> None:
    for sec, usec in ((0, 0), (10, 999_999), (2**31 - 1, 1)):
        assert timeval(sec, usec) == struct.pack("ll", sec, usec)


class FakeDaemon:
    """A real Unix socket answering the control protocol's status and search, one JSON line each."""

    def __init__(self, path: str) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(8)
        self.requests: list[dict[str, object]] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as lines:
                for line in lines:
                    req = json.loads(line)
                    self.requests.append(req)
                    result: dict[str, object] = {"hits": [{"root": "notes", "path": "a.md", "offset": 0, "length": 9,
                                                           "snippet": "the sorrel  harvest", "score": 1.5,
                                                           "highlights": [[4, 10]], "line_start": 3}],
                                                 "total": 1} if req["op"] == "search" else \
                        {"pid": 1, "uptime_s": 5, "ready": True, "agencies": {"alpha": {"files": 1}}}
                    conn.sendall(json.dumps({"id": req["id"], "ok": True, "result": result}).encode() + b"\n")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        self.server.close()
        self.thread.join(10)


ALLOWED_NEW = {"_json", "_socket", "errno", "__future__",  # beyond koradaemon's own client modules
               "os", "os.path", "posixpath", "genericpath", "stat", "_stat", "_collections_abc"}  # site loads these


@pytest.mark.parametrize("argv", [["search", "--agency", "alpha", "sorrel"], ["status"], ["status", "--json"]],
                         ids=" ".join)
def test_a_call_loads_only_the_client_modules(tmp_path: Path, argv: list[str]) -> None:
    """No argparse, re, json, socket, typing, yaml, structlog...: `python -S` so that only the call imports."""
    (tmp_path / "k.yaml").write_text("agencies:\n  - agency_id: alpha\n    roots: [notes]\ncontrol: {socket: s.sock}\n")
    (tmp_path / "run" / "tokens").mkdir(parents=True)
    (tmp_path / "run" / "tokens" / "alpha.token").write_text("tok-alpha\n")
    daemon = FakeDaemon(str(tmp_path / "s.sock"))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); before = set(sys.modules)\n"
            "from koradaemon.cli import main\n"
            "rc = main(sys.argv[2:]); sys.stdout.flush()\n"
            "print(' '.join(sorted(set(sys.modules) - before)), file=sys.stderr); sys.exit(rc)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KORA_", "PYTHON", "RUNTIME_DIRECTORY"))}
    try:
        res = subprocess.run([sys.executable, "-S", "-c", code, str(REPO), "-c", str(tmp_path / "k.yaml"),
                              "--data-root", str(tmp_path), *argv], capture_output=True, text=True, env=env,
                             timeout=60)
    finally:
        daemon.close()
    assert res.returncode == 0, res.stderr
    loaded = set(res.stderr.split())
    assert loaded - ALLOWED_NEW, "the call imported the CLI"
    assert {m for m in loaded - ALLOWED_NEW if not m.startswith("koradaemon")} == set()
    assert not loaded & {"koradaemon.cli.parser", "koradaemon.config", "koradaemon.control.client"}
    assert [r["op"] for r in daemon.requests] == [argv[0]] and daemon.requests[0]["token"] == "tok-alpha"
    if argv[0] == "search":
        assert daemon.requests[0]["args"] == {"query": "sorrel", "limit": 10}
        assert "L3  the «sorrel» harvest" in res.stdout
    elif "--json" in argv:
        assert json.loads(res.stdout)["health"] == "ok"
    else:
        assert res.stdout.splitlines()[0].startswith("koradaemon: running, pid 1") and "health: ok" in res.stdout
