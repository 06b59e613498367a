"""Outside streams: events/s through WebSocket and NATS with 1 and 50 consumers, and the latency
the export adds on the index path.

Run: .venv/bin/python bench/bench_streams.py [--events 20000] [--records 5000] [--edits 200]
     [--rounds 10] [--gap-ms 0] [--index-only] [--split]

* WebSocket: events published on the in-process bus, received by N clients in another process;
  beside the same events delivered to N in-process bus subscriptions (the floor of the fan-out).
* NATS: an audit log of R records exported by the exporter (in order, one publish ack at a time)
  while N core-NATS subscribers in another process receive them; beside a plain loop of
  acknowledged JetStream publishes of the same lines with a message id (the ceiling of in-order,
  acked, deduplicated publishing).
* Index path: write a file, wait for its ``index`` event on the control socket's subscribe stream.
  One daemon with the streams off and one with the WebSocket stream (one auditor reading) and the
  NATS export on (``--split``: also one with each alone) run at the same time; the edits go to
  them in interleaved rounds (order alternating), so load from elsewhere falls on each alike.
  Printed: each configuration's median and p90, its ratio to "off", and the median and quartiles
  of the per-round ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from natsutil import NatsServer

from koradaemon.audit.manager import AuditManager
from koradaemon.events import EventBus
from koradaemon.index.db import open_db
from koradaemon.streams.access import parse_clients
from koradaemon.streams.audittail import Head
from koradaemon.streams.nats_export import NatsExporter
from koradaemon.streams.websocket import WebSocketStream

WS_CLIENT = """
import asyncio, json, sys, time
from websockets.asyncio.client import connect
async def one(url, token, n, ready, t):
    async with connect(url, additional_headers={"Authorization": "Bearer " + token}, max_queue=None,
                       ping_interval=None) as ws:  # a pong queued behind 20000 frames is no outage
        await ws.recv()
        ready.append(1)
        for _ in range(n):
            await ws.recv()
        t.append(time.monotonic())
async def main():
    url, token, n, k = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ready, t = [], []
    tasks = [asyncio.create_task(one(url, token, n, ready, t)) for _ in range(k)]
    while len(ready) < k:
        await asyncio.sleep(0.01)
    print("ready", flush=True)
    await asyncio.gather(*tasks)
    print(json.dumps({"done": max(t)}), flush=True)
asyncio.run(main())
"""

NATS_CLIENT = """
import asyncio, json, sys, time
import nats
async def main():
    url, subj, n, k = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    ncs, counts, done = [], [0] * k, asyncio.Event()
    for i in range(k):
        nc = await nats.connect(url)
        async def cb(msg, i=i):
            counts[i] += 1
            if all(c >= n for c in counts):
                done.set()
        await nc.subscribe(subj, cb=cb)
        await nc.flush()
        ncs.append(nc)
    print("ready", flush=True)
    await done.wait()
    print(json.dumps({"done": time.monotonic()}), flush=True)
    for nc in ncs:
        await nc.close()
asyncio.run(main())
"""


def ws_rate(n_events: int, consumers: int) -> tuple[float, float]:
    bus = EventBus()
    stream = WebSocketStream(bus, host="127.0.0.1", port=0, clients=parse_clients(["b:viewer:a"], ["a"]),
                             tokens={"b": "bench-token"}, agencies=["a"], buffer_events=n_events + 10,
                             max_clients=consumers + 5)
    stream.start()
    try:
        proc = subprocess.Popen([sys.executable, "-c", WS_CLIENT, f"ws://127.0.0.1:{stream.port}/events",
                                 "bench-token", str(n_events), str(consumers)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        t0 = time.monotonic()
        for i in range(n_events):
            bus.emit("a", "index", {"root": "r", "path": f"notes/{i}.md", "sha256": "0" * 64, "chunks": 1})
        done = json.loads(proc.stdout.readline())["done"]
        proc.wait(60)
        ws_s = done - t0
    finally:
        stream.stop(time.monotonic() + 10)
    # the floor: the same fan-out to in-process subscriptions read by threads
    subs = [bus.subscribe("a", maxsize=n_events + 10) for _ in range(consumers)]
    readers = [threading.Thread(target=lambda s=s: [s.get(30) for _ in range(n_events)]) for s in subs]
    for r in readers:
        r.start()
    t0 = time.monotonic()
    for i in range(n_events):
        bus.emit("a", "index", {"root": "r", "path": f"notes/{i}.md", "sha256": "0" * 64, "chunks": 1})
    for r in readers:
        r.join()
    bus_s = time.monotonic() - t0
    for s in subs:
        s.close()
    return n_events / ws_s, n_events / bus_s


def nats_rate(tmp: Path, server: NatsServer, records: int, consumers: int) -> tuple[float, float]:
    root = tmp / f"nats-{consumers}"
    root.mkdir()
    open_db(root / "k.db").close()
    mgr = AuditManager(audit_root=root / "audit", db_path=root / "k.db", agency_ids=["a"])
    mgr.open_all()
    for i in range(0, records, 256):
        mgr.append_many("a", [("index", {"path": f"notes/{j}.md", "sha256": "0" * 64})
                              for j in range(i, min(records, i + 256))])
    host = f"bench{consumers}"
    proc = subprocess.Popen([sys.executable, "-c", NATS_CLIENT, server.url, f"kora.{host}.a.audit",
                             str(records + 1), str(consumers)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"

    def head(agency: str) -> Head | None:
        h = mgr.heads()[agency]
        return None if h is None else Head(h["seq"], h["segment"], h["offset"])

    t0 = time.monotonic()
    exporter = NatsExporter(EventBus(), url=server.url, host=host, agencies=["a"], audit_root=root / "audit",
                            heads=head, spool_dir=root / "spool")
    exporter.start()
    done = json.loads(proc.stdout.readline())["done"]
    export_s = done - t0
    exporter.stop(time.monotonic() + 10)
    proc.wait(60)
    mgr.close()
    lines = [ln for seg in sorted((root / "audit" / "a").glob("audit-*.jsonl")) for ln in seg.read_bytes().splitlines()]

    async def ceiling() -> float:
        import nats

        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(name=f"CEIL{consumers}", subjects=[f"ceil{consumers}.>"])
        t = time.monotonic()
        for ln in lines:  # with a message id, as the export needs one for deduplication
            await js.publish(f"ceil{consumers}.x", ln, headers={"Nats-Msg-Id": hashlib.sha256(ln).hexdigest()})
        took = time.monotonic() - t
        await nc.close()
        return took

    return (records + 1) / export_s, len(lines) / asyncio.run(ceiling())


INDEX_CONFIG = """\
version: 1
log: {{level: warning, format: json}}
watch: {{debounce_ms: 20}}
vault: {{enabled: true, passphrase_file: secrets/pass, auto_interval_s: 0, milestone_settle_s: 0}}
agencies:
  - agency_id: bench
    roots: [corpus]
{extra}"""


class IndexDaemon:
    """A daemon subprocess with one agency; :meth:`edits` times file written -> its ``index`` event."""

    def __init__(self, tmp: Path, name: str, extra: str, gap_s: float) -> None:
        from koradaemon.control.client import ControlClient

        self.name, self.gap_s = name, gap_s
        root = self.root = tmp / name
        (root / "corpus").mkdir(parents=True)
        (root / "secrets").mkdir()
        (root / "secrets" / "pass").write_text("bench passphrase\n")
        (root / "secrets" / "pass").chmod(0o600)
        (root / "koradaemon.yaml").write_text(INDEX_CONFIG.format(extra=extra))
        cmd = [sys.executable, "-m", "koradaemon", "-c", str(root / "koradaemon.yaml"), "--data-root", str(root),
               "run"]
        log = open(root / "daemon.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=dict(os.environ))
        log.close()
        sock = root / "run" / "koradaemon.sock"
        deadline = time.monotonic() + 60
        while not sock.exists() or not (root / "run" / "tokens" / "bench.token").exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"daemon did not start: {(root / 'daemon.log').read_text()[-2000:]}")
            time.sleep(0.1)
        time.sleep(1.0)
        token = (root / "run" / "tokens" / "bench.token").read_text().strip()
        self.reader_stop = threading.Event()
        if "websocket" in extra:  # one auditor client reads everything, as a collector would
            from websockets.sync.client import connect

            ws_port = int((root / "run" / "websocket.port").read_text())
            ws_token = (root / "run" / "ws-tokens" / "aud.token").read_text().strip()
            ws = connect(f"ws://127.0.0.1:{ws_port}/events?audit=1", legacy=True,
                         additional_headers={"Authorization": f"Bearer {ws_token}"})

            def drain() -> None:
                while not self.reader_stop.is_set():
                    try:
                        ws.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    except Exception:
                        return

            threading.Thread(target=drain, daemon=True).start()
        self.stream = ControlClient(sock, timeout=30).stream("subscribe", "bench", token, idle_timeout=30)
        assert next(self.stream)["type"] == "subscribed"
        self.n = 0
        self.edits(5)  # warm up (first chunks, first NATS publish, caches)

    def edits(self, count: int) -> list[float]:
        out: list[float] = []
        for _ in range(count):
            i, self.n = self.n, self.n + 1
            path = self.root / "corpus" / f"e{i % 20}.txt"
            t0 = time.perf_counter()
            path.write_text(f"edit {i} of the index path bench\n" * 20)
            for ev in self.stream:
                if ev and ev.get("type") == "index" and ev["data"]["path"] == path.name:
                    break
            out.append(time.perf_counter() - t0)
            if self.gap_s:
                time.sleep(self.gap_s)
        return out

    def stop(self) -> None:
        self.reader_stop.set()
        self.stream.close()
        self.proc.terminate()
        self.proc.wait(60)


def index_latency(tmp: Path, configs: dict[str, str], edits: int, rounds: int,
                  gap_s: float) -> list[dict[str, list[float]]]:
    """Every configuration's daemon runs at once; the rounds take turns (order alternating), so the
    machine's load falls on each alike. One dict of latencies per round."""
    daemons = [IndexDaemon(tmp, name, extra, gap_s) for name, extra in configs.items()]
    out: list[dict[str, list[float]]] = []
    per_round = max(1, edits // rounds)
    try:
        for r in range(rounds):
            out.append({})
            for d in (daemons if r % 2 == 0 else daemons[::-1]):
                out[-1][d.name] = d.edits(per_round)
    finally:
        for d in daemons:
            d.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--edits", type=int, default=200, help="per configuration, over all rounds")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--gap-ms", type=float, default=0.0, help="pause after each acknowledged edit")
    ap.add_argument("--index-only", action="store_true", help="only the index-path latency")
    ap.add_argument("--split", action="store_true", help="also WebSocket alone and NATS alone")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if not args.index_only:
            for k in (1, 50):
                ws, floor = ws_rate(args.events, k)
                print(f"websocket {k:>2} consumer(s): {ws:>9,.0f} events/s each ({ws * k:>10,.0f} msgs/s); "
                      f"in-process bus floor {floor:>9,.0f} events/s each; ratio {ws / floor:.2f}")
        server = NatsServer(tmp / "nats").start()
        try:
            if not args.index_only:
                for k in (1, 50):
                    rate, ceil = nats_rate(tmp, server, args.records, k)
                    print(f"nats      {k:>2} consumer(s): {rate:>9,.0f} records/s exported and received; "
                          f"acked-publish loop ceiling {ceil:>9,.0f}/s; ratio {rate / ceil:.2f}")
            ws_conf = """websocket:
  enabled: true
  port: 0
  clients: ["aud:auditor:bench"]
"""
            nats_conf = f"""nats:
  enabled: true
  url: {server.url}
  host_id: benchhost
  signing_key_secret: bench/nats-signing
"""
            configs = {"off": "", "on": ws_conf + nats_conf}
            if args.split:
                configs |= {"ws": ws_conf, "nats": nats_conf}
            rounds = index_latency(tmp, configs, args.edits, args.rounds, args.gap_ms / 1000)
            res = {name: [x for r in rounds for x in r[name]] for name in configs}
            off = statistics.median(res["off"])
            for name, lat in res.items():
                med = statistics.median(lat)
                per_round = sorted(statistics.median(r[name]) / statistics.median(r["off"]) for r in rounds)
                print(f"index path (write -> acknowledged event) {name:>4}: median {med * 1000:.2f} ms, "
                      f"p90 {statistics.quantiles(lat, n=10)[-1] * 1000:.2f} ms over {len(lat)} edits; "
                      f"ratio to off {med / off:.3f}; per-round ratios median {statistics.median(per_round):.3f}"
                      f" (quartiles {per_round[len(per_round) // 4]:.3f}-{per_round[3 * len(per_round) // 4]:.3f})")
            print(f"load: {os.getloadavg()}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
