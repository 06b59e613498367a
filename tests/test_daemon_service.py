"""The daemon as a service: sd_notify on a real datagram socket, real signals, the control socket."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import apsw
import pytest
from conftest import DaemonProc, wait_for

from koradaemon.control.client import ControlClient
from koradaemon.errors import AuthError, ProtocolError
from koradaemon.service.notify_listener import NotifyListener


def audit_records(d: DaemonProc, agency: str = "alpha") -> list[dict[str, object]]:
    out = []
    for seg in sorted((d.root / "audit" / agency).glob("audit-*.jsonl")):
        for line in seg.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def audit_types(d: DaemonProc, agency: str = "alpha") -> list[str]:
    return [str(r["type"]) for r in audit_records(d, agency)]


def test_sd_notify_lifecycle_and_signals(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    listener = NotifyListener(sock_path)
    d = DaemonProc(tmp_path / "root", env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"})
    d.root.mkdir(exist_ok=True)
    d.env["NOTIFY_SOCKET"] = str(sock_path)
    (d.root / "alpha" / "notes").mkdir(parents=True, exist_ok=True)
    (d.root / "alpha" / "notes" / "a.md").write_text("ready check\n")
    d.start(wait_ready=False)
    try:
        ready = listener.wait_for("READY", 30)
        # READY=1 comes after the database, the audit chains and the watchers: all answer now.
        st = d.client_call("status")
        assert st["ready"] is True and st["agencies"]["alpha"]["watch"][0]["mode"] == "inotify"
        assert st["agencies"]["alpha"]["audit"]["seq"] >= 0
        assert "STATUS" in ready
        pings = 0
        deadline = time.monotonic() + 10
        while pings < 3 and time.monotonic() < deadline:
            msg = listener.recv(2)
            if msg and msg.get("WATCHDOG") == "1":
                pings += 1
        assert pings >= 3, "WATCHDOG=1 pings at half WATCHDOG_USEC"

        d.signal(signal.SIGHUP)
        assert listener.wait_for("RELOADING", 10)
        assert listener.wait_for("READY", 10)

        d.signal(signal.SIGTERM)
        assert listener.wait_for("STOPPING", 10)
        assert d.proc is not None and d.proc.wait(30) == 0
    finally:
        if d.proc and d.proc.poll() is None:
            d.proc.kill()
        listener.close()


def test_sighup_rejects_bad_config_and_applies_good(daemon: DaemonProc) -> None:
    daemon.start()
    original = daemon.config.read_text()
    daemon.config.write_text("agencies: [this is: not valid\n")
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: any(e.get("event") == "reload_rejected" for e in daemon.log_events()), 10, what="rejection")
    assert daemon.status() is not None, "still serving on the old configuration"
    notes = daemon.root / "alpha" / "notes"
    (notes / "x.tmpnote").write_text("tmpnote about radicchio\n")
    wait_for(lambda: daemon.search("radicchio"), 10, what="indexed under the old rules")
    daemon.config.write_text(original.replace('ignore: ["*.skip"]', 'ignore: ["*.skip", "*.tmpnote"]'))
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "config_reload" in audit_types(daemon), 10, what="reload audited")
    (notes / "y.tmpnote").write_text("tmpnote about endive\n")
    (notes / "z.md").write_text("marker about chicory\n")
    wait_for(lambda: daemon.search("chicory"), 10, what="marker")
    assert daemon.search("endive") == [], "the new ignore rule is in force"
    assert daemon.stop() == 0


def test_sigusr1_takes_a_snapshot_and_sigterm_a_final_one(daemon: DaemonProc) -> None:
    state = daemon.root / "alpha" / "state"
    (state / "session.json").write_text('{"turn": 1}\n')
    daemon.start()
    snaps = daemon.root / "snapshots" / "alpha"
    daemon.signal(signal.SIGUSR1)
    wait_for(lambda: snaps.is_dir() and any((p / "manifest.json").exists() for p in snaps.iterdir()), 30,
             what="snapshot after SIGUSR1")
    first = sorted(p.name for p in snaps.iterdir() if (p / "manifest.json").exists())
    manifest = json.loads((snaps / first[0] / "manifest.json").read_text())
    assert manifest["trigger"] == "signal" and manifest["agency"] == "alpha"
    wait_for(lambda: "snapshot" in audit_types(daemon), 10, what="snapshot audited")
    assert daemon.stop() == 0
    triggers = [json.loads((p / "manifest.json").read_text())["trigger"] for p in snaps.iterdir()
                if (p / "manifest.json").exists()]
    assert "shutdown" in triggers, "a planned stop takes a final snapshot"
    # Restore into a folder through the CLI (offline): the state comes back byte for byte.
    res = daemon.cli("restore", "--agency", "alpha", "--target", "restored", check=True)
    assert json.loads(res.stdout)["restored"]
    restored = list((daemon.root / "restored").rglob("session.json"))
    assert restored and restored[0].read_text() == '{"turn": 1}\n'


def test_sigterm_stops_gracefully_and_leaves_consistent_files(daemon: DaemonProc) -> None:
    notes = daemon.root / "alpha" / "notes"
    for i in range(200):
        (notes / f"n{i}.md").write_text(f"note {i} about saffron\n")
    daemon.start()
    for i in range(50):
        (notes / f"late{i}.md").write_text(f"late note {i} about sumac\n")
    assert daemon.stop() == 0
    events = [e.get("event") for e in daemon.log_events()]
    assert "daemon_stopped" in events
    conn = apsw.Connection(str(daemon.root / "kora_kernel.db"))
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    res = daemon.cli("audit", "verify")
    assert res.returncode == 0 and res.stdout.count("OK agency=") == 2, res.stdout + res.stderr


def test_control_socket_refuses_and_audits(daemon: DaemonProc) -> None:
    daemon.start()
    sock = daemon.root / "run" / "koradaemon.sock"
    assert sock.stat().st_mode & 0o777 == 0o600
    with ControlClient(sock) as c:
        with pytest.raises(AuthError):
            c.call("status", "alpha", "not-the-token")
        with pytest.raises(AuthError):
            c.call("status", "nobody", "x")
    token = (daemon.root / "run" / "tokens" / "alpha.token").read_text().strip()
    with ControlClient(sock) as c, pytest.raises(ProtocolError):
        c.call("drop_tables", "alpha", token)
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(str(sock))
    raw.sendall(b"{not json\n\xff\xfe\n" + b"[1,2]\n")
    replies = b""
    while replies.count(b"\n") < 3:
        chunk = raw.recv(65536)
        assert chunk, "the server closed the connection on malformed input"
        replies += chunk
    raw.close()
    assert all(json.loads(line)["ok"] is False for line in replies.splitlines())
    wait_for(lambda: audit_types(daemon).count("refused") >= 2, 10, what="refusals audited")
    assert daemon.status() is not None, "still serving"
    assert daemon.stop() == 0


def test_status_json_and_human(daemon: DaemonProc) -> None:
    (daemon.root / "alpha" / "notes" / "a.md").write_text("status check\n")
    daemon.start()
    res = daemon.cli("status", "--json", check=True)
    st = json.loads(res.stdout)
    for key in ("uptime_s", "queue", "crawl", "agencies", "lockdowns", "agent", "vault"):
        assert key in st
    alpha = st["agencies"]["alpha"]
    assert alpha["files"] == 1 and alpha["chunks"] == 1 and alpha["locked"] is False
    assert alpha["watch"][0]["watched_dirs"] >= 1
    human = daemon.cli("status", check=True).stdout
    assert "agency alpha: ok; 1 files" in human and "running" in human
    assert daemon.stop() == 0
    offline = daemon.cli("status")
    assert offline.returncode == 69 and "not running" in offline.stdout


def test_subscribe_streams_acknowledged_changes_and_put_context(daemon: DaemonProc) -> None:
    daemon.start()
    token = (daemon.root / "run" / "tokens" / "alpha.token").read_text().strip()
    client = ControlClient(daemon.root / "run" / "koradaemon.sock")
    stream = client.stream("subscribe", "alpha", token, idle_timeout=15)
    assert next(stream)["type"] == "subscribed"
    (daemon.root / "alpha" / "notes" / "live.md").write_text("streamed note about sorrel\n")
    event = next(e for e in stream if e.get("type") == "index")
    data = event["data"]
    assert data["path"] == "live.md" and data["chunks"] == 1 and len(data["sha256"]) == 64
    assert event["v"] == 1 and event["agency_id"] == "alpha" and isinstance(event["seq"], int)
    record = next(r for r in audit_records(daemon) if r["seq"] == event["seq"])
    assert record["hash"] == event["hash"] and record["type"] == "index" and record["data"]["path"] == "live.md"
    stream.close()
    res = daemon.client_call("vault.put_context", name="session-1.json", content='{"goal": "demo"}')
    assert res["bytes"] == 16
    assert (daemon.root / "alpha" / "state" / "context" / "session-1.json").read_text() == '{"goal": "demo"}'
    with pytest.raises(Exception, match="context name"):
        daemon.client_call("vault.put_context", name="../escape", content="x")
    wait_for(lambda: "context_put" in audit_types(daemon), 10, what="context audited")
    assert daemon.stop() == 0


def test_get_chunk_refuses_traversal_symlink_escape_and_stale_refs(daemon: DaemonProc) -> None:
    notes = daemon.root / "alpha" / "notes"
    (notes / "a.md").write_text("reference me: tarragon\n")
    outside = daemon.root / "beta" / "notes" / "secret.md"
    outside.write_text("beta's secret: tarragon\n")
    (notes / "link.md").symlink_to(outside)
    daemon.start()
    hit = next(h for h in daemon.search("tarragon") if h["path"] == "a.md")
    ref = {"root": "alpha/notes", "path": "a.md", "offset": hit["offset"], "length": hit["length"],
           "sha256": hit["sha256"]}
    assert "tarragon" in daemon.client_call("get_chunk", **ref)["text"]
    for bad in ({**ref, "path": "../../beta/notes/secret.md"}, {**ref, "path": "link.md"},
                {**ref, "root": "beta/notes", "path": "secret.md"}, {**ref, "path": "/etc/passwd"}):
        with pytest.raises(Exception) as err:
            daemon.client_call("get_chunk", **bad)
        assert getattr(err.value, "code", "") in ("path", "data"), err.value
    (notes / "a.md").write_text("reference me: changed now\n")
    with pytest.raises(Exception, match=r"changed since it was indexed|shorter"):
        daemon.client_call("get_chunk", **ref)
    assert "link.md" not in {h["path"] for h in daemon.search("tarragon")}, "escaping symlink not indexed"
    assert daemon.stop() == 0


def test_second_daemon_on_the_same_data_root_is_refused(daemon: DaemonProc) -> None:
    (daemon.root / "alpha" / "notes" / "a.md").write_text("only one writer: fenugreek\n")
    daemon.start()
    second = daemon.cli("run", timeout=30)
    assert second.returncode == 75
    assert "another koradaemon" in second.stderr + "".join(
        str(e.get("error", "")) for e in _json_lines(second.stdout + second.stderr))
    assert daemon.search("fenugreek"), "the first daemon is unharmed"
    assert daemon.stop() == 0
    res = daemon.cli("audit", "verify")
    assert res.returncode == 0, res.stdout


def _json_lines(text: str) -> list[dict[str, object]]:
    out = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out
