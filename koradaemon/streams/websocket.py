"""The WebSocket event stream: a part with its own thread and asyncio loop (docs/streams.md).

Publishers never wait for it: the bus listener appends the event to a bounded hand-over queue and
wakes the loop at most once per burst. The loop fans each event out to the connections granted to
see it, into one bounded queue per connection; a connection whose queue is full is dropped with
close code 1008 and a reason naming the cause, so one slow consumer never holds up the others or
the daemon.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hmac
import json
import ssl
import threading
import time
import weakref
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..errors import ConfigError, KoraError
from ..events import Event, EventBus, RawRecord, audit_events
from .access import Client, Grant, Refused, grant

log = structlog.get_logger(__name__)

MAX_HANDOVER = 100_000  # events waiting for the loop; beyond, new events are dropped (and counted)
LINGER_S = 0.005  # between the first event of a burst and its fan-out
DRAIN_SLICE = 256  # handed-over items fanned out before the loop's other work gets a turn
SLOW_CLOSE_CODE = 1008
STOP_CLOSE_CODE = 1001


@dataclass(eq=False)
class _Conn:
    ws: ServerConnection
    grant: Grant
    queue: asyncio.Queue[str]
    sender: asyncio.Task[None] | None = None
    dropped: bool = False
    sent: int = 0


@dataclass
class WsStats:
    clients: int = 0
    connections_total: int = 0
    refused: int = 0
    slow_dropped: int = 0
    handover_dropped: int = 0
    bad_records: int = 0
    events_in: int = 0
    messages_out: int = 0


class WebSocketStream:
    """Start with :meth:`start` (returns once listening), stop with :meth:`stop` (a deadline)."""

    def __init__(self, bus: EventBus, *, host: str, port: int, clients: dict[str, Client],
                 tokens: dict[str, str], agencies: list[str], buffer_events: int, max_clients: int,
                 tls: ssl.SSLContext | None = None, port_file: Path | None = None, close_timeout: float = 5.0) -> None:
        self.bus = bus
        self.host, self.port = host, port
        self.clients, self.tokens, self.agencies = clients, tokens, agencies
        self.buffer_events, self.max_clients = buffer_events, max_clients
        self.tls, self.port_file, self.close_timeout = tls, port_file, close_timeout
        self.stats = WsStats()
        self._lock = threading.Lock()
        # events, and raw audit batches decoded on this part's own thread
        self._handover: collections.deque[tuple[str, Event | list[RawRecord]]] = collections.deque()
        self._wake_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[_Conn] = set()
        # grants between the HTTP check and the handler; weak: a handshake that fails leaves nothing behind
        self._grants: weakref.WeakKeyDictionary[ServerConnection, Grant] = weakref.WeakKeyDictionary()
        self._closing: set[asyncio.Future[None]] = set()
        self._audit_conns = 0

    # -- life cycle -----------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="kora-websocket", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise KoraError("the WebSocket stream did not start in time")
        if self._error is not None:
            raise ConfigError(f"websocket: cannot listen on {self.host}:{self.port}: {self._error}")
        self.bus.add_listener(self._on_event)
        # audit batches are handed over only while a connection that may receive them is open
        self.bus.add_audit_listener(self._on_audit, lambda: self._audit_conns > 0)
        log.info("websocket_listening", host=self.host, port=self.port, tls=self.tls is not None,
                 clients=len(self.clients))

    def stop(self, deadline: float) -> None:
        self.bus.remove_listener(self._on_event)
        self.bus.remove_audit_listener(self._on_audit)
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._thread.is_alive():
                log.warning("websocket_stop_timeout")

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the publisher's side (any thread) -------------------------------------------------
    def _on_event(self, agency_id: str, event: Event) -> None:
        self._hand_over(agency_id, event)

    def _on_audit(self, agency_id: str, records: list[RawRecord]) -> None:
        self._hand_over(agency_id, records)

    def _hand_over(self, agency_id: str, item: Event | list[RawRecord]) -> None:
        with self._lock:
            if len(self._handover) >= MAX_HANDOVER:
                self.stats.handover_dropped += 1
                return
            self._handover.append((agency_id, item))
            wake, self._wake_pending = not self._wake_pending, True
        loop = self._loop
        if wake and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (stopping)
                # the fan-out runs a moment later, in a batch, after the publisher's own delivery
                loop.call_soon_threadsafe(loop.call_later, LINGER_S, self._drain)

    # -- the loop ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start() or logged; never kills the daemon
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                log.error("websocket_failed", error=repr(exc))

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server: Server = await serve(self._handler, self.host, self.port, ssl=self.tls,
                                         process_request=self._check_request, close_timeout=self.close_timeout,
                                         compression=None, max_size=4096, server_header=None)
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self.port = int(server.sockets[0].getsockname()[1])
        if self.port_file is not None:
            self.port_file.parent.mkdir(parents=True, exist_ok=True)
            self.port_file.write_text(f"{self.port}\n")
        self._ready.set()
        await self._stop.wait()
        server.close(close_connections=False)
        for conn in list(self._conns):
            self._close(conn, STOP_CLOSE_CODE, "daemon stopping")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), self.close_timeout)

    def _check_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """Authenticate (Authorization: Bearer <token>) and grant before the upgrade."""
        client = self._authenticate(request.headers)
        if client is None:
            self.stats.refused += 1
            log.warning("websocket_refused", reason="bad token", peer=str(ws.remote_address))
            return ws.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong token\n")
        url = urlsplit(request.path)
        if url.path not in ("/", "/events"):
            return ws.respond(HTTPStatus.NOT_FOUND, "the event stream is at /events\n")
        query = parse_qs(url.query)
        try:
            g = grant(client, query.get("agency", []), query.get("audit", ["0"])[-1] in ("1", "true"),
                      self.agencies)
        except Refused as exc:
            self.stats.refused += 1
            log.warning("websocket_refused", client=client.name, reason=str(exc))
            return ws.respond(HTTPStatus.FORBIDDEN, f"{exc}\n")
        if len(self._conns) + len(self._grants) >= self.max_clients:
            return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too many clients\n")
        self._grants[ws] = g
        return None

    def _authenticate(self, headers: Headers) -> Client | None:
        value = headers.get("Authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        found = None
        for name, expected in self.tokens.items():  # constant time per client, no early exit
            if hmac.compare_digest(expected.encode(), token.strip().encode()):
                found = self.clients.get(name)
        return found

    async def _handler(self, ws: ServerConnection) -> None:
        g = self._grants.pop(ws, None)
        if g is None:
            return
        conn = _Conn(ws, g, asyncio.Queue(self.buffer_events))
        self._conns.add(conn)
        self._counted()
        self.stats.connections_total += 1
        log.info("websocket_connected", client=g.client.name, role=g.client.role, agencies=sorted(g.agencies))
        try:
            await ws.send(json.dumps({"type": "subscribed", "v": 1, "client": g.client.name, "role": g.client.role,
                                      "agencies": sorted(g.agencies)}))
            conn.sender = asyncio.create_task(self._send_loop(conn))
            closed = asyncio.create_task(ws.wait_closed())
            await asyncio.wait({conn.sender, closed}, return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
        except ConnectionClosed:
            pass
        finally:
            if conn.sender is not None:
                conn.sender.cancel()
            self._conns.discard(conn)
            self._counted()
            if conn.dropped:  # let the close frame (with its reason) reach a consumer that reads late
                with contextlib.suppress(Exception):
                    await ws.wait_closed()

    async def _send_loop(self, conn: _Conn) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                text = await conn.queue.get()
                await conn.ws.send(text)
                conn.sent += 1
                self.stats.messages_out += 1

    def _drain(self) -> None:
        """Fan out up to DRAIN_SLICE handed-over items, then let the loop send (and answer pings)
        before the next slice: a burst of thousands never holds the loop for long."""
        with self._lock:
            items = [self._handover.popleft() for _ in range(min(DRAIN_SLICE, len(self._handover)))]
            more = bool(self._handover)
            self._wake_pending = more
        if more and self._loop is not None:
            self._loop.call_soon(self._drain)
        for agency_id, item in items:
            if isinstance(item, list):
                try:
                    events = audit_events(agency_id, item)
                except Exception as exc:  # a record that does not decode: counted, the rest go on
                    self.stats.bad_records += 1
                    log.warning("websocket_bad_audit_record", agency_id=agency_id, error=str(exc))
                    continue
            else:
                events = [item]
            for event in events:
                self._fan_out(agency_id, event)

    def _fan_out(self, agency_id: str, event: Event) -> None:
        self.stats.events_in += 1
        rendered: dict[bool, str] = {}  # one JSON text per view: file text kept / stripped
        for conn in list(self._conns):
            if conn.dropped:
                continue
            view = conn.grant.view(agency_id, event)
            if view is None:
                continue
            strips = conn.grant.client.strips_text
            text = rendered.get(strips)
            if text is None:
                text = rendered[strips] = json.dumps(view, ensure_ascii=False, separators=(",", ":"))
            try:
                conn.queue.put_nowait(text)
            except asyncio.QueueFull:
                self.stats.slow_dropped += 1
                log.warning("websocket_slow_consumer_dropped", client=conn.grant.client.name,
                            buffer_events=self.buffer_events)
                self._close(conn, SLOW_CLOSE_CODE,
                            f"slow consumer: more than {self.buffer_events} events behind, dropped")

    def _counted(self) -> None:
        self.stats.clients = len(self._conns)
        self._audit_conns = sum(1 for c in self._conns if "audit" in c.grant.categories)

    def _close(self, conn: _Conn, code: int, reason: str) -> None:
        conn.dropped = True
        if conn.sender is not None:
            conn.sender.cancel()
        self._conns.discard(conn)
        self._counted()
        task = asyncio.ensure_future(conn.ws.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
