"""Pure parts of the CLI: the yaml-free config reader agrees with the full parser, safe printing,
search rendering, and migrations racing from several processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from koradaemon.cli import quickconf
from koradaemon.cli.render_search import render_search
from koradaemon.cli.text import escape
from koradaemon.config import load_config
from koradaemon.index.db import open_db, user_version
from koradaemon.index.schema import SCHEMA_VERSION

REPO = Path(__file__).resolve().parent.parent

CONFIGS = {
    "example": (REPO / "etc" / "koradaemon.example.yaml").read_text(),
    "flow": "version: 1\nlog: {level: debug, format: json}\nvault: {enabled: false, keep_last: 3,\n"
            "        idle_lock_s: 60}\ncontrol: {socket: s/k.sock, tokens_dir: 't/tok'}\n"
            "agencies:\n  - agency_id: alpha\n    roots: [alpha/notes]\n    ignore: [\"*.skip\", 'a # b']\n"
            "  - {agency_id: beta, roots: [beta/notes]}\n",
    "block": "agencies:\n- agency_id: solo   # comment\n  roots:\n  - solo/docs\ncontrol:\n  socket: \"r/x.sock\"\n",
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_quickconf_reads_what_the_full_parser_reads(tmp_path: Path, name: str) -> None:
    path = tmp_path / "koradaemon.yaml"
    path.write_text(CONFIGS[name])
    full = load_config(path, data_root=tmp_path, runtime_checks=False)  # as client commands read it
    quick = quickconf.read(str(path), str(tmp_path))
    assert quick is not None, "this config is inside the plain subset"
    assert quick.socket == full.control.socket and quick.tokens_dir == full.control.tokens_dir
    assert quick.agencies == [a.agency_id for a in full.agencies]
    assert quick.socket_path() == str(full.socket_path()) and quick.tokens_path() == str(full.tokens_path())


@pytest.mark.parametrize("text", [
    "base: &b {socket: x}\ncontrol: *b\nagencies: [{agency_id: a}]\n",            # anchors and aliases
    "control: !!map {socket: x}\nagencies: [{agency_id: a}]\n",                   # tags
    "control:\n  socket: |\n    x\nagencies: [{agency_id: a}]\n",                 # block scalars
    "control:\n    socket: a\n  tokens_dir: b\nagencies: [{agency_id: a}]\n",     # odd indentation
    "control: {socket: \"a\\tb\"}\nagencies: [{agency_id: a}]\n",                 # escapes
    "control: {socket: ../out}\nagencies: [{agency_id: a}]\n",                    # unsafe path: full parser
    "agencies: [{agency_id: a}, {agency_id: a}]\n",                               # duplicate: full parser
    "---\nagencies: [{agency_id: a}]\n",
])
def test_quickconf_leaves_anything_unusual_to_the_full_parser(tmp_path: Path, text: str) -> None:
    path = tmp_path / "k.yaml"
    path.write_text(text)
    assert quickconf.read(str(path), str(tmp_path)) is None


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc:-[]{}#'\" \n\t&*!|>,./_0")), max_size=80))
def test_quickconf_never_raises_and_never_disagrees(text: str) -> None:
    import yaml

    try:
        doc = quickconf.parse(text)
    except Exception as exc:  # only its own "not the plain subset" signal may escape
        assert type(exc).__name__ == "_Unsupported"
        return
    try:
        expected = yaml.safe_load(text)
    except yaml.YAMLError:
        pytest.fail(f"quickconf accepted what YAML rejects: {text!r}")
    assert _strings(doc) == _strings(expected), text


def _strings(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strings(v) for v in value]
    return None if value is None else str(value)


def test_escape_makes_every_name_one_unambiguous_line() -> None:
    name = "a\nb\tc\\d\x1b[31me\u202ef" + "\udcff"
    out = escape(name)
    assert out == "a\\nb\\tc\\\\d\\x1b[31me\\u202ef\\xff"
    assert "\n" not in out and "\x1b" not in out
    assert escape("«x»", extra="«»") == "\\«x\\»"


def test_search_rendering_groups_by_file_with_lines_and_markers() -> None:
    snippet = "a «literal» then fennel here"
    start = snippet.index("fennel")
    hits = [
        {"root": "r", "path": "a\nb.md", "offset": 0, "length": 9, "snippet": snippet, "score": 2.5,
         "line_start": 3, "line_end": 4, "highlights": [[start, start + 6]]},
        {"root": "r", "path": "c.md", "offset": 5, "length": 7, "snippet": "x [y] z", "score": -1e-06},
        {"root": "r", "path": "a\nb.md", "offset": 9, "length": 9, "snippet": "more", "line_start": 9},
    ]
    text = render_search({"hits": hits, "total": 120, "total_estimate": True}, offset=0, color=False)
    lines = text.splitlines()
    assert lines[0] == "about 120 matching chunks; showing 1-3"
    assert lines[1] == "r/a\\nb.md"
    assert "L3-4  a \\«literal\\» then «fennel» here" in lines[2]
    assert lines[3].strip() == "ref r/a\\nb.md@0+9  score 2.500"
    assert lines[4].strip().startswith("L9  more"), "hits of one file stay together"
    assert lines[6] == "r/c.md" and "score 1.00e-06" in lines[8]
    coloured = render_search({"hits": hits[:1]}, offset=0, color=True)
    assert "\x1b[1;31mfennel\x1b[0m" in coloured and "«fennel»" not in coloured
    stale = {"root": "r", "path": "d.md", "offset": 0, "length": 4, "snippet": "", "highlights": [],
             "line_start": 7, "line_end": 7, "match_line": 7, "stale": True}
    assert "L7  (stale: the file changed since it was indexed)" in render_search({"hits": [stale]}, offset=0,
                                                                              color=False)


def test_migrations_from_several_processes_at_once(tmp_path: Path) -> None:
    db = tmp_path / "race.db"
    code = ("import sys, pathlib; from koradaemon.index.db import open_db; "
            "open_db(pathlib.Path(sys.argv[1])).close()")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db)], stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors
    conn = open_db(db)
    try:
        assert user_version(conn) == SCHEMA_VERSION
    finally:
        conn.close()


def test_wire_waits_out_busy_answers_and_maps_error_codes(tmp_path: Path) -> None:
    """A real Unix socket server: two "busy" answers (each on a fresh connection), then a result."""
    import json
    import socket
    import threading

    from koradaemon.cli.wire import Wire
    from koradaemon.errors import LockdownError

    path = str(tmp_path / "s.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    seen: list[dict[str, object]] = []

    def serve() -> None:
        for i in range(4):
            conn, _ = server.accept()
            with conn:
                req = json.loads(conn.makefile("rb").readline())
                seen.append(req)
                if i < 2:
                    body = {"id": req["id"], "ok": False, "error": {"code": "busy", "message": "no slot"}}
                elif i == 2:
                    body = {"id": req["id"], "ok": True, "result": {"pong": True}}
                else:
                    body = {"id": req["id"], "ok": False, "error": {"code": "lockdown", "message": "locked"}}
                conn.sendall(json.dumps(body).encode() + b"\n")

    t = threading.Thread(target=serve)
    t.start()
    try:
        with Wire(path, timeout=10) as w:
            assert w.call("ping", "alpha", "tok") == {"pong": True}
        with Wire(path, timeout=10) as w, pytest.raises(LockdownError):
            w.call("search", "alpha", "tok", query="x")
    finally:
        t.join(10)
        server.close()
    assert [r["op"] for r in seen] == ["ping", "ping", "ping", "search"]
    assert seen[3]["args"] == {"query": "x"} and seen[0]["agency_id"] == "alpha" and seen[0]["token"] == "tok"
