"""NATS JetStream export against a real nats-server: no gap and no duplicate across a server
restart in the middle of a burst, events from the on-disk spool, the fleet verifier, and signed
checkpoints catching a rolled-back, truncated or forked local log."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from natsutil import NatsServer

from koradaemon.audit.manager import AuditManager
from koradaemon.errors import TamperError
from koradaemon.events import EventBus
from koradaemon.index.db import open_db
from koradaemon.streams.audittail import Head
from koradaemon.streams.nats_export import NatsExporter
from koradaemon.streams.natsnames import load_json
from koradaemon.streams.natsverify import against_checkpoint, fetch, last_checkpoint, verify_chain

HOST = "testhost"


class Rig:
    def __init__(self, root: Path, server: NatsServer, signer: Ed25519PrivateKey | None = None,
                 checkpoint_every: int = 1000) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        open_db(root / "k.db").close()
        self.bus = EventBus()
        self.audit = AuditManager(audit_root=root / "audit", db_path=root / "k.db", agency_ids=["alpha"],
                                  on_commit=self.bus.on_audit_commit)
        self.audit.open_all()
        self.exporter = NatsExporter(self.bus, url=server.url, host=HOST, agencies=["alpha"],
                                     audit_root=root / "audit", heads=self.head, spool_dir=root / "spool",
                                     signer=signer, checkpoint_every=checkpoint_every, checkpoint_interval_s=3600,
                                     ack_timeout=1.0)
        self.exporter.start()

    def head(self, agency: str) -> Head | None:
        h = self.audit.heads()[agency]
        return None if h is None else Head(h["seq"], h["segment"], h["offset"])

    def close(self) -> None:
        self.exporter.stop(time.monotonic() + 10)
        self.audit.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    s = NatsServer(tmp_path / "nats-store").start()
    try:
        yield s
    finally:
        s.stop()


def audit_seqs(server: NatsServer) -> list[int]:
    return [json.loads(m)["seq"] for m in fetch(server.url, HOST, "alpha", "audit")]


def test_server_restart_mid_burst_leaves_no_gap_and_no_duplicate(tmp_path: Path, server: NatsServer) -> None:
    rig = Rig(tmp_path / "root", server)
    total = 1500
    try:
        def burst() -> None:
            for i in range(total):
                rig.audit.append("alpha", "index", {"path": f"f{i}.md"})
                rig.bus.emit("alpha", "lockdown" if i % 100 == 0 else "snapshot", {"n": i})

        writer = threading.Thread(target=burst)
        writer.start()
        wait_for(lambda: rig.exporter.stats.audit_published >= 300, 60, 0.01, "the export under way")
        server.stop()  # in the middle of the burst
        published_while_up = rig.exporter.stats.audit_published
        time.sleep(1.0)  # stay down a while: the burst goes on, the log and the spool buffer it
        server.start()
        writer.join(120)
        assert published_while_up < total + 1, "the server went down mid-burst"
        wait_for(lambda: rig.exporter.stats.audit_published >= total + 1 and rig.exporter.stats.events_published
                 >= total, 120, 0.05, "everything exported after the restart")
        seqs = audit_seqs(server)
        assert seqs == list(range(total + 1))  # genesis + the burst: every seq once, in order
        report = verify_chain("alpha", fetch(server.url, HOST, "alpha", "audit"))
        assert report.ok and report.head_seq == total
        assert report.head_hash == rig.audit.heads()["alpha"]["hash"]  # type: ignore[index]
        events = [json.loads(m)["data"]["n"] for m in fetch(server.url, HOST, "alpha", "events")]
        assert events == list(range(total))
        assert rig.exporter.stats.retries > 0
    finally:
        rig.close()


def test_export_resumes_after_a_daemon_restart_from_what_the_stream_holds(tmp_path: Path,
                                                                         server: NatsServer) -> None:
    rig = Rig(tmp_path / "root", server)
    for i in range(50):
        rig.audit.append("alpha", "index", {"path": f"a{i}.md"})
    wait_for(lambda: rig.exporter.stats.audit_published >= 51, 60, 0.05, "first run exported")
    rig.close()
    rig2 = Rig(tmp_path / "root", server)
    try:
        for i in range(20):
            rig2.audit.append("alpha", "index", {"path": f"b{i}.md"})
        wait_for(lambda: rig2.exporter.stats.audit_published >= 20, 60, 0.05, "second run exported")
        assert audit_seqs(server) == list(range(71))
    finally:
        rig2.close()


def test_events_spooled_on_disk_while_nats_is_down_survive_a_daemon_restart(tmp_path: Path,
                                                                           server: NatsServer) -> None:
    server.stop()
    rig = Rig(tmp_path / "root", server)
    for i in range(40):
        rig.bus.emit("alpha", "snapshot", {"n": i})
    wait_for(lambda: (tmp_path / "root" / "spool" / "events.jsonl").read_bytes().count(b"\n") == 40, 30, 0.05,
             "events on disk")
    rig.close()  # the daemon stops before NATS ever came back
    server.start()
    rig = Rig(tmp_path / "root", server)
    try:
        wait_for(lambda: rig.exporter.stats.events_published >= 40, 60, 0.05, "spooled events sent")
        assert [json.loads(m)["data"]["n"] for m in fetch(server.url, HOST, "alpha", "events")] == list(range(40))
        assert audit_seqs(server) == [0]
    finally:
        rig.close()


def test_fleet_verifier_finds_a_changed_record(tmp_path: Path) -> None:
    lines = [json.dumps(r).encode() for r in _chain(5)]
    assert verify_chain("alpha", lines).ok
    bad = json.loads(lines[3])
    bad["data"] = {"path": "changed.md"}
    report = verify_chain("alpha", [*lines[:3], json.dumps(bad).encode(), lines[4]])
    assert not report.ok and report.first_bad_seq == 3 and report.reason == "hash mismatch"
    dup = verify_chain("alpha", [*lines[:3], lines[2], *lines[3:]])
    assert not dup.ok and dup.first_bad_seq == 3 and "duplicate" in str(dup.reason)
    gap = verify_chain("alpha", [*lines[:2], *lines[3:]])
    assert not gap.ok and gap.first_bad_seq == 2 and "gap" in str(gap.reason)


def _chain(n: int) -> list[dict[str, object]]:
    from koradaemon.audit.record import record_hash

    out: list[dict[str, object]] = []
    prev = "0" * 64
    for seq in range(n):
        rec: dict[str, object] = {"v": 1, "seq": seq, "ts": "2026-01-01T00:00:00Z", "agency_id": "alpha",
                                  "type": "index", "data": {"path": f"{seq}.md"}, "prev": prev}
        rec["hash"] = prev = record_hash(rec)
        out.append(rec)
    return out


def _copy_state(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    shutil.copytree(src / "audit", dst / "audit")
    shutil.copy(src / "k.db", dst / "k.db")


def _restore_state(saved: Path, root: Path) -> None:
    shutil.rmtree(root / "audit")
    shutil.copytree(saved / "audit", root / "audit")
    for suffix in ("", "-wal", "-shm"):
        (root / f"k.db{suffix}").unlink(missing_ok=True)
    shutil.copy(saved / "k.db", root / "k.db")


@pytest.mark.parametrize("attack", ["rollback", "truncate", "fork"])
def test_checkpoints_catch_rollback_truncation_and_fork(tmp_path: Path, server: NatsServer, attack: str) -> None:
    root = tmp_path / "root"
    key = Ed25519PrivateKey.generate()
    rig = Rig(root, server, signer=key, checkpoint_every=10)
    for i in range(19):
        rig.audit.append("alpha", "index", {"path": f"early{i}.md"})
    wait_for(lambda: rig.exporter.stats.audit_published >= 20, 60, 0.05, "early records exported")
    rig.close()  # the whole state at seq 19, copied (database and log together, as root could)
    _copy_state(root, tmp_path / "saved")
    rig = Rig(root, server, signer=key, checkpoint_every=10)
    for i in range(15):
        rig.audit.append("alpha", "index", {"path": f"late{i}.md"})
    wait_for(lambda: rig.exporter.stats.checkpoints >= 1 and rig.exporter.stats.audit_published >= 15, 60, 0.05,
             "a checkpoint past seq 19")
    rig.close()
    ckpt = last_checkpoint(server.url, HOST, "alpha")
    assert ckpt["seq"] > 19
    assert against_checkpoint(root / "audit" / "alpha", "alpha", ckpt)["ok"]  # the honest log passes
    if attack == "truncate":  # the newest records cut off the log (past seq 24), whole lines, no torn tail
        seg = sorted((root / "audit" / "alpha").glob("audit-*.jsonl"))[-1]
        kept = [ln for ln in seg.read_bytes().splitlines(keepends=True) if json.loads(ln)["seq"] <= 24]
        seg.write_bytes(b"".join(kept))
    else:  # database and log together replaced by their copy at seq 19
        _restore_state(tmp_path / "saved", root)
    if attack == "fork":  # the rolled-back log goes on with different records past the checkpoint
        mgr = AuditManager(audit_root=root / "audit", db_path=root / "k.db", agency_ids=["alpha"])
        mgr.open_all()
        for i in range(30):
            mgr.append("alpha", "index", {"path": f"forged{i}.md"})
        mgr.close()
    with pytest.raises(TamperError, match="forked" if attack == "fork" else "rolled back or truncated"):
        against_checkpoint(root / "audit" / "alpha", "alpha", last_checkpoint(server.url, HOST, "alpha"))


def test_a_checkpoint_signed_by_another_key_is_refused(tmp_path: Path, server: NatsServer) -> None:
    root = tmp_path / "root"
    rig = Rig(root, server, signer=Ed25519PrivateKey.generate(), checkpoint_every=5)
    for i in range(6):
        rig.audit.append("alpha", "index", {"path": f"{i}.md"})
    wait_for(lambda: rig.exporter.stats.checkpoints >= 1, 60, 0.05, "first checkpoint")
    rig.close()
    rig = Rig(root, server, signer=Ed25519PrivateKey.generate(), checkpoint_every=5)  # an impostor's key
    for i in range(6):
        rig.audit.append("alpha", "index", {"path": f"x{i}.md"})
    wait_for(lambda: rig.exporter.stats.checkpoints >= 1, 60, 0.05, "impostor's checkpoint")
    rig.close()
    with pytest.raises(TamperError, match="another key"):
        last_checkpoint(server.url, HOST, "alpha")
    impostor = load_json(fetch(server.url, HOST, "alpha", "checkpoint")[-1])["key"]
    with pytest.raises(TamperError, match="another key"):  # a pinned key refuses even the first one
        last_checkpoint(server.url, HOST, "alpha", key=impostor)


# -- the daemon, the CLI and the script, as a user runs them ---------------------------------------
def nats_config(url: str) -> str:
    return f"""nats:
  enabled: true
  url: {url}
  host_id: t1
  signing_key_secret: alpha/nats-signing
  checkpoint_every: 3
  checkpoint_interval_s: 1
"""


def test_daemon_exports_and_the_cli_verifies_from_and_against_nats(tmp_path: Path, server: NatsServer) -> None:
    from conftest import DaemonProc

    d = DaemonProc(tmp_path / "root", extra=nats_config(server.url))
    d.start()
    try:
        for i in range(5):
            (d.root / "alpha" / "notes" / f"n{i}.md").write_text(f"exported note {i}\n")
        wait_for(lambda: len(fetch(server.url, "t1", "alpha", "audit")) >= 7, 60, 0.1, "records on the stream")
        wait_for(lambda: fetch(server.url, "t1", "alpha", "checkpoint"), 60, 0.1, "a checkpoint")
        res = d.cli("audit", "verify", "--from-nats", server.url, "--host", "t1", "--agency", "alpha")
        assert res.returncode == 0 and "agency alpha: ok" in res.stdout, res.stderr
        assert "nats-signing" in d.cli("secret", "list", "--agency", "alpha", check=True).stdout
        events = [json.loads(m) for m in fetch(server.url, "t1", "alpha", "events")]
        assert any(e["type"] == "index" and e["data"]["path"] == "n0.md" for e in events)
    finally:
        assert d.stop() == 0
    ok = d.cli("audit", "verify", "--against-nats", server.url, "--host", "t1", "--agency", "alpha")
    assert ok.returncode == 0 and "holds the checkpoint" in ok.stdout, ok.stdout + ok.stderr
    key = load_json(fetch(server.url, "t1", "alpha", "checkpoint")[0])["key"]
    pinned = d.cli("audit", "verify", "--against-nats", server.url, "--host", "t1", "--agency", "alpha",
                   "--checkpoint-key", key)
    assert pinned.returncode == 0, pinned.stdout + pinned.stderr
    wrong = d.cli("audit", "verify", "--against-nats", server.url, "--host", "t1", "--agency", "alpha",
                  "--checkpoint-key", "00" * 32)
    assert wrong.returncode == 65 and "another key" in wrong.stdout
    seg = sorted((d.root / "audit" / "alpha").glob("audit-*.jsonl"))[-1]
    seg.write_bytes(b"".join(seg.read_bytes().splitlines(keepends=True)[:2]))  # root cuts the log short
    bad = d.cli("audit", "verify", "--against-nats", server.url, "--host", "t1", "--agency", "alpha")
    assert bad.returncode == 65 and "rolled back or truncated" in bad.stdout
    unreachable = d.cli("audit", "verify", "--from-nats", "nats://127.0.0.1:1", "--host", "t1", "--agency", "alpha")
    assert unreachable.returncode == 69 and "cannot reach NATS" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_token_from_the_secrets_vault_and_the_verifier_token_file(tmp_path: Path) -> None:
    from conftest import DaemonProc

    server = NatsServer(tmp_path / "store", extra=("--auth", "nats-s3cret-token")).start()
    d = DaemonProc(tmp_path / "root", extra=nats_config(server.url) + "  token_secret: alpha/nats-token\n")
    try:
        import subprocess
        import sys

        cmd = [sys.executable, "-m", "koradaemon", "-c", str(d.config), "--data-root", str(d.root),
               "secret", "set", "--agency", "alpha", "nats-token"]
        assert subprocess.run(cmd, input=b"nats-s3cret-token\n", env=d.env, timeout=120).returncode == 0
        d.start()
        (d.root / "alpha" / "notes" / "t.md").write_text("token auth\n")
        (tmp_path / "tok").write_text("nats-s3cret-token\n")
        wait_for(lambda: len(fetch(server.url, "t1", "alpha", "audit", "nats-s3cret-token")) >= 2, 60, 0.1,
                 "records exported with the token")
        res = d.cli("audit", "verify", "--from-nats", server.url, "--host", "t1", "--agency", "alpha",
                    "--token-file", str(tmp_path / "tok"))
        assert res.returncode == 0 and "agency alpha: ok" in res.stdout, res.stderr
        no_token = d.cli("audit", "verify", "--from-nats", server.url, "--host", "t1", "--agency", "alpha")
        assert no_token.returncode == 77 and "Traceback" not in no_token.stderr
        assert "refused the credentials (no credentials): Authorization Violation" in no_token.stderr
        assert b"nats-s3cret-token" not in d.log.read_bytes()
    finally:
        assert d.stop() == 0
        server.stop()


def test_scripts_nats_local_starts_a_jetstream_server(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess

    from natsutil import free_port

    repo = Path(__file__).resolve().parent.parent
    port = free_port()
    proc = subprocess.Popen([str(repo / "scripts" / "nats-local"), str(port)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "NATS_DATA": str(tmp_path / "nd")})
    try:
        def info() -> bytes:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    return s.recv(4096)
            except OSError:
                return b""

        banner = wait_for(info, 60, 0.1, "nats-local listening")
        assert banner.startswith(b"INFO") and b'"jetstream":true' in banner.replace(b" ", b"")
        assert (tmp_path / "nd").is_dir()
    finally:
        proc.terminate()
        proc.wait(20)
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.mark.parametrize("data", [{"seq": 99}, {"x": ',"hash":"' + "a" * 64 + '"', "y": ',"seq":7,'}, {}])
def test_tail_reads_seq_and_hash_of_lines_whose_data_mimics_them(data: dict[str, object]) -> None:
    from koradaemon.audit.record import LineEncoder, data_bytes
    from koradaemon.streams.audittail import _seq_and_hash

    line, digest = LineEncoder("alpha").encode(12, "2026-01-01T00:00:00.000000Z", "index",
                                               data_bytes(data, "alpha", "index"), "0" * 64)
    assert json.loads(line)["hash"] == digest
    assert _seq_and_hash(line.rstrip(b"\n")) == (12, digest)
