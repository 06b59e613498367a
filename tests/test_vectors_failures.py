"""Vectors off, broken, offline, resumed: nothing loaded when off, clear errors, no network, restart resumes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import DaemonProc, wait_for

from koradaemon.config import parse_config
from koradaemon.index.db import open_db
from koradaemon.index.store import AgencyStore
from koradaemon.vectors.codes import CodeIndex
from koradaemon.vectors.embedder import Embedder
from koradaemon.vectors.model import load_tokenizer, load_weights, prepare_cache_dir
from koradaemon.vectors.store import VectorTables, connect
from koradaemon.vectors.worker import AgencyVectors, Step

HEAVY = ("numpy", "sqlite_vec", "vec0", "tokenizers", "wordllama", "safetensors")


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.parametrize("enabled", [False, True])
def test_disabled_vectors_load_nothing(tmp_path: Path, enabled: bool) -> None:
    d = DaemonProc(tmp_path, extra="vectors: {enabled: true}" if enabled else "")
    (tmp_path / "alpha" / "notes" / "a.md").write_text("parsnips and turnips\n")
    try:
        d.start()
        assert [h["path"] for h in d.client_call("search", query="parsnips")["hits"]] == ["a.md"]
        assert d.proc is not None
        if enabled:  # the same check finds the libraries when they are loaded
            wait_for(lambda: all(m in mapped_files(d.proc.pid) for m in ("numpy", "sqlite_vec", "tokenizers")),
                     30, 0.1, "vector libraries mapped")
        else:
            maps = mapped_files(d.proc.pid)
            assert not [m for m in HEAVY if m in maps]
            st = d.status()
            assert st is not None and st["agencies"]["alpha"]["vectors"] == {"state": "disabled"}
    finally:
        d.stop()


def shadow_package(root: Path, broken: str) -> Path:
    """A folder put first on PYTHONPATH that shadows one vector dependency with a broken copy."""
    shadow = root / "shadow"
    if broken == "sqlite_vec":  # the extension's shared library is missing
        (shadow / "sqlite_vec").mkdir(parents=True)
        (shadow / "sqlite_vec" / "__init__.py").write_text(
            "import os\ndef loadable_path():\n    return os.path.join(os.path.dirname(__file__), 'vec0-missing')\n")
    else:  # a wordllama without its weights and tokenizer
        (shadow / "wordllama" / "weights").mkdir(parents=True)
        (shadow / "wordllama" / "tokenizers").mkdir()
        (shadow / "wordllama" / "__init__.py").write_text("")
    return shadow


@pytest.mark.parametrize(("broken", "words"), [("sqlite_vec", "sqlite-vec"), ("wordllama", "model")])
def test_broken_extension_or_model_is_one_clear_error_and_keyword_goes_on(
        tmp_path: Path, broken: str, words: str) -> None:
    shadow = shadow_package(tmp_path, broken)
    d = DaemonProc(tmp_path / "data", extra="vectors: {enabled: true}", env={"PYTHONPATH": str(shadow)})
    (d.root / "alpha" / "notes" / "a.md").write_text("parsnips and turnips\n")
    try:
        d.start()
        st = wait_for(lambda: (s := d.status()) and s["agencies"]["alpha"]["vectors"]["state"] == "error" and s,
                      30, 0.1, "vector error in status")
        err = st["agencies"]["alpha"]["vectors"]["error"]
        assert words in err and "\n" not in err
        res = d.cli("search", "--agency", "alpha", "parsnips")  # default mode: keyword goes on
        assert res.returncode == 0 and "a.md" in res.stdout
        res = d.cli("search", "--agency", "alpha", "--mode", "keyword", "turnips")
        assert res.returncode == 0 and "a.md" in res.stdout
        res = d.cli("search", "--agency", "alpha", "--mode", "vector", "parsnips")
        assert res.returncode == 69, res
        assert words in res.stderr and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    finally:
        d.stop()


NO_NETWORK = textwrap.dedent("""
    import json, sys
    seen = {"daemon": [], "wordllama": []}
    phase = "daemon"
    REACH = ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto", "socket.sendmsg",
             "urllib.Request", "http.client.connect")
    def hook(event, args):
        # The daemon's path may not even create a socket; wordllama's own loader imports requests, whose
        # urllib3 probes IPv6 support at import (a socket bound to ::1), but may not reach out either.
        if event in REACH or (phase == "daemon" and event.startswith("socket.")):
            seen[phase].append(event)
            raise RuntimeError(f"network access: {event}")
    sys.addaudithook(hook)
    import time
    from pathlib import Path
    from koradaemon.config import parse_config
    from koradaemon.index.db import open_db
    from koradaemon.index.store import AgencyStore
    from koradaemon.vectors.service import start_vectors
    from koradaemon.vectors.model import load_via_wordllama
    root = Path(sys.argv[1])
    (root / "notes").mkdir(parents=True)
    body = b"Take the vehicle to a mechanic when the engine knocks.\\n"
    (root / "notes" / "car.md").write_bytes(body)
    import hashlib
    cfg = parse_config("agencies: [{agency_id: alpha, roots: [notes]}]\\nvectors: {enabled: true, poll_s: 0.02}",
                       data_root=root, runtime_checks=False)
    conn = open_db(root / "kora_kernel.db")
    digest = hashlib.sha256(body).hexdigest()
    with conn:
        AgencyStore(conn, "alpha").put_document("notes", "car.md", len(body), 1, digest,
                                                [(0, len(body), digest, body.decode(), 1, "")])
    svc = start_vectors(cfg, root / "kora_kernel.db", lambda a: False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not svc.has_vectors("alpha") and svc.state != "error":
        time.sleep(0.02)
    hits = svc.search("alpha", "car repair", 5)
    svc.stop()
    phase = "wordllama"
    wl = load_via_wordllama(root / "wl-cache")  # the package's own loader too, downloads disabled
    wl.embed(["car repair"])
    print(json.dumps({"state": svc.state, "error": svc.error, "hits": [h["path"] for h in hits], "seen": seen}))
""")


def test_model_and_extension_never_touch_the_network(tmp_path: Path) -> None:
    script = tmp_path / "offline.py"
    script.write_text(NO_NETWORK)
    cmd = [sys.executable, str(script), str(tmp_path / "root")]
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        cmd = ["unshare", "-n", *cmd]  # and no network to reach at all, for code below Python's audit hooks
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr[-3000:]
    out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    assert out == {"state": "ready", "error": None, "hits": ["car.md"], "seen": {"daemon": [], "wordllama": []}}


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    files = prepare_cache_dir(tmp_path_factory.mktemp("model"))
    return Embedder(load_tokenizer(files), load_weights(files, 256), files.name)


def test_lag_is_reported_and_a_restart_resumes_where_it_stopped(tmp_path: Path, embedder: Embedder) -> None:
    cfg = parse_config("agencies: [{agency_id: alpha, roots: [notes]}]", data_root=tmp_path, runtime_checks=False)
    notes = tmp_path / "notes"
    notes.mkdir()
    kernel = open_db(tmp_path / "kora_kernel.db")
    import hashlib

    with kernel:
        for i in range(12):
            body = (f"note {i} about rivers and boats " * 200).encode()
            (notes / f"n{i}.md").write_bytes(body)
            digest = hashlib.sha256(body).hexdigest()
            AgencyStore(kernel, "alpha").put_document("notes", f"n{i}.md", len(body), 1, digest,
                                                      [(0, len(body), digest, body.decode(), 1, "")])
    left_after_first = sum((notes / f"n{i}.md").stat().st_size for i in range(4, 12))

    def fresh() -> AgencyVectors:
        conn = connect(tmp_path / "kora_vectors.db", tmp_path / "kora_kernel.db")
        tables = VectorTables(conn, "alpha")
        tables.ensure(embedder.name, 256)
        index = CodeIndex(32)
        index.add(tables.all_codes())
        return AgencyVectors(tables, index, cfg.agencies[0].roots)

    # a step takes chunks until it has batch_passages x passage_bytes = 20,480 bytes: 4 notes of 6,000
    step = Step(embedder, tmp_path, passage_bytes=1024, batch_passages=20)
    av = fresh()
    assert step.run(av) and av.status()["lag_chunks"] == 8 and av.status()["lag_bytes"] == left_after_first
    assert step.run(av)
    done_before = av.tables.counts()
    assert done_before[0] == 8
    av.tables.conn.close()  # "crash": a new service starts from what the database holds

    av = fresh()
    assert len(av.index) == done_before[1]
    assert step.run(av)
    assert av.status()["embedded_chunks"] == 4  # only the four that were left
    assert not step.run(av) and av.status()["lag_chunks"] == 0
    chunks, passages = av.tables.counts()
    assert chunks == 12 and passages == len(av.index) and passages >= 12 * 5


def test_vector_mode_without_a_running_daemon_is_one_clear_line(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path, extra="vectors: {enabled: true}")
    (tmp_path / "alpha" / "notes" / "a.md").write_text("parsnips\n")
    d.start()
    d.stop()  # an index exists, no daemon runs: the CLI works on the data root
    res = d.cli("search", "--agency", "alpha", "--mode", "keyword", "parsnips")
    assert res.returncode == 0 and "a.md" in res.stdout
    res = d.cli("search", "--agency", "alpha", "--mode", "hybrid", "parsnips")
    assert res.returncode == 69 and "needs the running daemon" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


YIELDING_LOAD = textwrap.dedent("""
    import json, sys, threading, time
    from pathlib import Path
    from koradaemon.config import parse_config
    from koradaemon.vectors.service import start_vectors
    root = Path(sys.argv[1])
    (root / "notes").mkdir(parents=True)
    cfg = parse_config("agencies: [{agency_id: alpha, roots: [notes]}]\\nvectors: {enabled: true}",
                       data_root=root, runtime_checks=False)
    busy, polls = threading.Event(), []
    busy.set()
    def pipeline_busy():  # idle at the first look, then a burst of files arrives
        polls.append(1)
        return len(polls) > 1 and busy.is_set()
    svc = start_vectors(cfg, root / "kora_kernel.db", lambda a: False, pipeline_busy)
    deadline = time.monotonic() + 30
    while len(polls) < 20 and time.monotonic() < deadline:  # the vector thread is polling
        time.sleep(0.01)
    seen_busy = {"polls": len(polls) >= 20, "numpy": "numpy" in sys.modules, "state": svc.state}
    busy.clear()
    loaded = svc.wait_loaded(60)
    print(json.dumps({"busy": seen_busy, "loaded": loaded, "state": svc.state, "numpy": "numpy" in sys.modules}))
    svc.stop()
""")


def test_the_model_loads_only_while_the_keyword_pipeline_is_idle(tmp_path: Path) -> None:
    # Importing numpy and parsing the tokenizer hold the GIL for hundreds of ms: a load that began
    # while the pipeline was idle goes on only once it is idle again (a fresh interpreter: nothing
    # imported before).
    script = tmp_path / "yielding.py"
    script.write_text(YIELDING_LOAD)
    res = subprocess.run([sys.executable, str(script), str(tmp_path / "root")], capture_output=True, text=True,
                         timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr[-3000:]
    # the vector thread's log lines go to stdout too, and may come after the result
    (line,) = [ln for ln in res.stdout.splitlines() if ln.startswith('{"busy"')]
    out = json.loads(line)
    assert out == {"busy": {"polls": True, "numpy": False, "state": "loading"},
                   "loaded": True, "state": "ready", "numpy": True}
