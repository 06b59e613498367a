"""Export to NATS JetStream (docs/nats.md): audit records, events and signed checkpoints.

One thread runs an asyncio loop with one NATS connection. Audit records are read from the KBL-1
files themselves, from the seq after the last one the stream holds, never past the durable head,
and published one at a time, each waiting for its publish ack, with the record's hash as the
message id: the stream gets every record once, in order, whatever happens to the connection or
to the daemon. Other events are appended to an on-disk spool first and sent from it the same way.
While NATS is down, nothing is lost: the audit log and the spool are the buffer; the export
resumes in order when the server is back. Every ``checkpoint_every`` records and every
``checkpoint_interval_s`` seconds, the chain head is signed with Ed25519 and published.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client as NatsClient
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from ..events import Event, EventBus
from .audittail import AuditTail, Head, Line
from .natsauth import NatsAuth, NatsRefused, connect
from .natsnames import sign_checkpoint, stream_name, subject
from .spool import Spool

log = structlog.get_logger(__name__)

MAX_HANDOVER = 100_000
RETRY_S = 0.5
REFUSED_RETRY_S = 5.0  # credentials the server refused are not tried again at once
LINGER_S = 0.02  # after a wake-up, before exporting (batching; keeps off the index path's hot moment)


async def _log_nats_error(exc: Exception) -> None:
    log.debug("nats_client_error", error=repr(exc))


@dataclass
class ExportStats:
    connected: bool = False
    audit_published: int = 0
    events_published: int = 0
    checkpoints: int = 0
    retries: int = 0
    handover_dropped: int = 0
    bad_events: int = 0
    last_error: str | None = None
    refused: bool = False  # the server refused the credentials (last connection attempt)


@dataclass
class _AgencyState:
    tail: AuditTail | None = None
    backlog: collections.deque[Line] = field(default_factory=collections.deque)
    last: tuple[int, str, int] | None = None  # seq, hash, segment of the last exported record
    since_checkpoint: int = 0
    checkpoint_at: float = field(default_factory=time.monotonic)
    checkpointed_seq: int = -1


class NatsExporter:
    def __init__(self, bus: EventBus, *, url: str, host: str, agencies: list[str], audit_root: Path,
                 heads: Callable[[str], Head | None], spool_dir: Path, auth: NatsAuth | None = None,
                 signer: Ed25519PrivateKey | None = None, checkpoint_every: int = 1000,
                 checkpoint_interval_s: float = 60.0, ack_timeout: float = 2.0) -> None:
        self.bus, self.url, self.host, self.agencies = bus, url, host, list(agencies)
        self.audit_root, self.heads, self.auth, self.signer = audit_root, heads, auth, signer
        self.checkpoint_every, self.checkpoint_interval_s = checkpoint_every, checkpoint_interval_s
        self.ack_timeout = ack_timeout
        self.spool = Spool(spool_dir)
        self.stats = ExportStats()
        self._state = {a: _AgencyState() for a in self.agencies}
        self._lock = threading.Lock()
        self._handover: collections.deque[tuple[str, Event]] = collections.deque()
        self._wake_pending = False  # a wake-up is on its way to the loop (one per burst)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="kora-nats", daemon=True)
        self._thread.start()
        self._started.wait(10)
        self.bus.add_listener(self._on_event)
        self.bus.add_commit_watcher(self._on_commit)
        log.info("nats_export_started", url=self.url, host=self.host, agencies=self.agencies)

    def stop(self, deadline: float) -> None:
        self.bus.remove_listener(self._on_event)
        self.bus.remove_commit_watcher(self._on_commit)
        self._stopping = True
        self._poke()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._thread.is_alive():
                log.warning("nats_export_stop_timeout")
                return  # the thread still uses the spool; the process is ending anyway
        self.spool.close()

    def state(self) -> str:
        """``connected``; ``refused`` (the server refused the credentials: records wait in the
        spool until they are fixed); ``down`` (unreachable or broken: retrying); ``connecting``."""
        st = self.stats
        if st.connected:
            return "connected"
        if st.refused:
            return "refused"
        return "down" if st.last_error else "connecting"

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- publisher side (any thread; never blocks) ------------------------------------------
    # Only a hand-over under a short lock and at most one wake-up per burst: the JSON, the spool
    # and the network all happen on the exporter's thread, after its linger.
    def _on_event(self, agency_id: str, event: Event) -> None:
        if event.get("type") == "audit" or agency_id not in self._state:
            return  # audit records are read from the log itself
        with self._lock:
            if len(self._handover) >= MAX_HANDOVER:
                self.stats.handover_dropped += 1
                return
            self._handover.append((agency_id, event))
            wake, self._wake_pending = not self._wake_pending, True
        if wake:
            self._poke()

    def _on_commit(self, agency_id: str, last_seq: int) -> None:
        with self._lock:
            wake, self._wake_pending = not self._wake_pending, True
        if wake:
            self._poke()

    def _poke(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    # -- the loop ---------------------------------------------------------------------------
    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._started.set()
        nc: NatsClient | None = None
        try:
            while not self._stopping:
                try:
                    self._spool_new()  # on disk first, connected or not
                    if nc is None:
                        nc = await self._connect()
                    js = nc.jetstream()
                    busy = await self._round(js)
                except Exception as exc:  # NATS down or refusing: keep everything, retry in order
                    self._sync_spool()
                    self.stats.retries += 1
                    error = str(exc) if isinstance(exc, NatsRefused) else repr(exc)
                    self.stats.refused = isinstance(exc, NatsRefused)
                    if self.stats.last_error != error:
                        if self.stats.refused:
                            log.error("nats_export_refused", error=error)
                        else:
                            log.warning("nats_export_retrying", error=error)
                    self.stats.last_error = error
                    self.stats.connected = bool(nc is not None and nc.is_connected)
                    await self._sleep(REFUSED_RETRY_S if self.stats.refused else RETRY_S)
                    continue
                self.stats.connected, self.stats.refused = True, False
                if not busy:
                    await self._sleep(1.0)
        finally:
            with contextlib.suppress(OSError):  # what arrived until the stop is kept for the next start
                self._spool_new()
            self._sync_spool()
            if nc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(nc.close(), 2)

    async def _sleep(self, seconds: float) -> None:
        """Wait for a wake-up (or ``seconds``), then linger a moment: the export work then runs in
        batches and after the index path's own acknowledgement, not in competition with it."""
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        if not self._stopping:
            await asyncio.sleep(LINGER_S)
        self._wake.clear()

    async def _connect(self) -> NatsClient:
        nc = await connect(self.url, self.auth, timeout=5, connect_timeout=2, allow_reconnect=True,
                           max_reconnect_attempts=-1, reconnect_time_wait=0.2, name=f"koradaemon@{self.host}",
                           error_cb=_log_nats_error)
        js = nc.jetstream()
        for agency in self.agencies:
            with contextlib.suppress(Exception):  # exists already (same config)
                await js.add_stream(name=stream_name(self.host, agency),
                                    subjects=[f"kora.{self.host}.{agency}.>"], storage="file")
        log.info("nats_connected", url=self.url, auth=self.auth.describe() if self.auth else "none")
        return nc

    async def _round(self, js: JetStreamContext) -> bool:
        """One pass: spool new events, export audit records, then events, then checkpoints."""
        lines = self._spool_new()
        busy = False
        for agency, st in self._state.items():
            if st.tail is None:
                st.tail = AuditTail(self.audit_root / agency, await self._resume_seq(js, agency))
            if not st.backlog:  # lines read but not yet acknowledged stay first in line
                st.backlog.extend(st.tail.read(self.heads(agency), limit=256))
            busy = busy or bool(st.backlog)
            while st.backlog:
                line = st.backlog[0]
                await self._publish(js, subject(self.host, agency, "audit"), line.raw,
                                    {"Nats-Msg-Id": line.hash})
                st.backlog.popleft()
                st.last = (line.seq, line.hash, st.tail.segment)
                st.since_checkpoint += 1
                self.stats.audit_published += 1
            await self._maybe_checkpoint(js, agency, st)
        pending = self.spool.pending()
        acked = None
        try:
            for end, raw in pending:
                doc = json.loads(raw)
                payload = json.dumps(doc["e"], separators=(",", ":"), ensure_ascii=False).encode()
                msg_id = doc["id"] or hashlib.sha256(raw).hexdigest()
                await self._publish(js, subject(self.host, doc["a"], "events"), payload, {"Nats-Msg-Id": msg_id})
                self.stats.events_published += 1
                acked = end
        finally:  # what was acknowledged is never sent again, even after a long outage
            if acked is not None:
                self.spool.ack(acked)
        return busy or bool(pending) or lines > 0

    def _spool_new(self) -> int:
        """Serialise the handed-over events and append them to the spool (one write, no fsync:
        :meth:`Spool.sync` runs when they cannot be sent at once)."""
        with self._lock:
            items = list(self._handover)
            self._handover.clear()
            self._wake_pending = False
        lines: list[bytes] = []
        for agency_id, event in items:
            try:
                digest = event.get("hash")
                msg_id = f"{event.get('type')}:{digest}" if digest else None
                lines.append(json.dumps({"a": agency_id, "id": msg_id, "e": event}, separators=(",", ":"),
                                        ensure_ascii=False).encode())
            except (TypeError, ValueError) as exc:  # not JSON: counted, the others go on
                self.stats.bad_events += 1
                log.warning("nats_export_bad_event", agency_id=agency_id, error=repr(exc))
        self.spool.append(lines)
        return len(lines)

    def _sync_spool(self) -> None:
        try:
            self.spool.sync()
        except OSError as exc:  # disk trouble: the lines stay in the page cache, sent when possible
            log.warning("nats_spool_sync_failed", error=str(exc))

    async def _publish(self, js: JetStreamContext, subj: str, payload: bytes, headers: dict[str, str]) -> None:
        await js.publish(subj, payload, timeout=self.ack_timeout, headers=headers)

    async def _resume_seq(self, js: JetStreamContext, agency: str) -> int:
        """The seq after the last audit record the stream holds (0 for an empty stream)."""
        try:
            msg = await js.get_last_msg(stream_name(self.host, agency), subject(self.host, agency, "audit"))
        except NotFoundError:
            return 0
        return int(json.loads(msg.data or b"{}")["seq"]) + 1

    async def _maybe_checkpoint(self, js: JetStreamContext, agency: str, st: _AgencyState) -> None:
        if self.signer is None or st.last is None or st.last[0] == st.checkpointed_seq:
            return
        due = st.since_checkpoint >= self.checkpoint_every or \
            time.monotonic() - st.checkpoint_at >= self.checkpoint_interval_s
        if not due:
            return
        seq, digest, segment = st.last
        doc = sign_checkpoint(self.signer, {"v": 1, "host": self.host, "agency_id": agency, "seq": seq,
                                            "hash": digest, "segment": segment,
                                            "ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
        await self._publish(js, subject(self.host, agency, "checkpoint"),
                            json.dumps(doc, sort_keys=True, separators=(",", ":")).encode(),
                            {"Nats-Msg-Id": f"checkpoint:{digest}"})
        st.checkpointed_seq, st.since_checkpoint, st.checkpoint_at = seq, 0, time.monotonic()
        self.stats.checkpoints += 1
