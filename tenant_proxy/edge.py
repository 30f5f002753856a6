"""The edge of a TLS listener: each TCP connection from accept to close, bounded in count and time.

kube-apiserver (Go's net/http behind k8s.io/apiserver's secure serving) gives a connection 32 s
for its TLS handshake and for each request head, and 90 s idle between requests; long requests
(watches, exec, port-forward, upgrades) are never cut, since none of these clocks runs while a
request is being served. aiohttp alone has one idle timer (one hour by default) and no handshake
timeout or connection cap, so a client that handshakes and sends nothing, or half a head, holds
a connection for an hour. Here the listener accepts plain TCP, counts it against the caps, runs
the handshake itself (`loop.start_tls`) under its own deadline, then hands the TLS transport to
aiohttp's request handler through `EdgeConnection`, which forwards every event and keeps the
clocks. Request start and end reach it from the app's middleware (`requests_tracked`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from tenant_proxy.observability import Metrics

log = logging.getLogger("tenant_proxy.edge")


@dataclass(frozen=True)
class EdgeLimits:
    """Clocks and caps of one listener (from `limits` in the settings)."""

    handshake_timeout: float = 32.0
    header_timeout: float = 32.0
    idle_timeout: float = 90.0
    max_connections: int = 8192
    max_per_address: int = 1024  # 0: no cap


class ConnectionCounts:
    """Open connections of one listener, in total and per client address. Pure."""

    def __init__(self, max_total: int, max_per_address: int) -> None:
        self._max_total, self._max_per_address = max_total, max_per_address
        self._by_address: Counter[str] = Counter()
        self.total = 0

    def admit(self, address: str) -> str | None:
        """Count a new connection in; or the reason it is refused (and it is not counted)."""
        if self.total >= self._max_total:
            return "listener_cap"
        if self._max_per_address and self._by_address[address] >= self._max_per_address:
            return "address_cap"
        self.total += 1
        self._by_address[address] += 1
        return None

    def release(self, address: str) -> None:
        self.total -= 1
        self._by_address[address] -= 1
        if self._by_address[address] <= 0:
            del self._by_address[address]


class Phase(enum.Enum):
    HANDSHAKE = "handshake"
    HEAD = "head"  # waiting for (the rest of) a request head
    BUSY = "busy"  # a request is being served: no clock runs
    IDLE = "idle"  # kept alive between requests


class Listener:
    """What every connection of one listener shares."""

    def __init__(
        self,
        name: str,
        context: ssl.SSLContext,
        limits: EdgeLimits,
        metrics: Metrics,
        handler_factory: Callable[[], asyncio.Protocol],
    ) -> None:
        self.name, self.context, self.limits = name, context, limits
        self.handler_factory = handler_factory
        self.counts = ConnectionCounts(limits.max_connections, limits.max_per_address)
        self.open = metrics.connections_open.labels(name)
        self._refused, self._closed = metrics.connections_refused, metrics.connections_closed
        self.connections: set[EdgeConnection] = set()
        self.closing = False

    def refused(self, reason: str) -> None:
        self._refused.labels(self.name, reason).inc()

    def closed(self, reason: str) -> None:
        self._closed.labels(self.name, reason).inc()

    def abort_all(self) -> None:
        """On drain: connections still in their handshake or idle go now (busy ones finish)."""
        self.closing = True
        for conn in list(self.connections):
            conn.abort_unless_busy()


class EdgeConnection(asyncio.Protocol):
    """One TCP connection: first the TLS handshake, then a relay to aiohttp's handler."""

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._raw: asyncio.Transport | None = None
        self._tls: asyncio.Transport | None = None
        self._handler: asyncio.Protocol | None = None
        self._address = ""
        self._counted = False
        self._timer: asyncio.TimerHandle | None = None
        self._handshake: asyncio.Task[None] | None = None
        self.phase = Phase.HANDSHAKE
        self._busy = 0
        self._early: list[bytes] = []

    # -- the plain TCP side, until the handshake ---------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._raw = transport
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if peer else ""
        listener = self._listener
        refusal = "draining" if listener.closing else listener.counts.admit(self._address)
        if refusal is not None:
            listener.refused(refusal)
            transport.abort()
            return
        self._counted = True
        listener.open.inc()
        listener.connections.add(self)
        # Nothing is read until start_tls takes the transport over (the ClientHello waits).
        transport.pause_reading()
        self._handshake = asyncio.get_running_loop().create_task(self._start_tls(transport))

    async def _start_tls(self, raw: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        limit = self._listener.limits.handshake_timeout
        try:
            async with asyncio.timeout(limit):
                # The loop's own handshake timeout is a backstop: ours fires first and counts.
                tls = await loop.start_tls(
                    raw,
                    self,
                    self._listener.context,
                    server_side=True,
                    ssl_handshake_timeout=limit + 5,
                )
        except TimeoutError:
            self._give_up(raw, "tls_handshake_timeout")
            return
        except Exception:
            # A failed handshake is the client's (not TLS, no shared cipher, reset): whatever
            # the loop raised, the connection is given up and its count released.
            self._give_up(raw, "tls_handshake_failed")
            return
        if tls is None or self._listener.closing:
            self._give_up(raw, "draining")
            return
        self._tls = tls
        self._handler = self._listener.handler_factory()
        self._handler.connection_made(tls)
        self._expect_head()
        # What the client sent with its last handshake message (TLS 1.3 clients send the
        # request at once) reached data_received before this coroutine resumed.
        early, self._early = b"".join(self._early), []
        if early:
            self._handler.data_received(early)

    def _give_up(self, raw: asyncio.Transport, reason: str) -> None:
        self._listener.closed(reason)
        raw.abort()
        self._release()

    # -- the TLS side: every event goes on to aiohttp's handler ----------------------------------
    def data_received(self, data: bytes) -> None:
        if self.phase is Phase.IDLE:
            self._expect_head()
        if self._handler is not None:
            self._handler.data_received(data)
        else:
            self._early.append(data)

    def eof_received(self) -> bool | None:
        return self._handler.eof_received() if self._handler is not None else None

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if self._handler is not None:
            self._handler.connection_lost(exc)
            self._handler = None
        self._release()

    # -- clocks ------------------------------------------------------------------------------------
    def request_started(self) -> None:
        self._busy += 1
        self.phase = Phase.BUSY
        self._cancel_timer()

    def request_finished(self) -> None:
        self._busy -= 1
        if self._busy == 0 and self._tls is not None:
            self.phase = Phase.IDLE
            self._arm(self._listener.limits.idle_timeout, "idle_timeout")

    def abort_unless_busy(self) -> None:
        if self.phase is not Phase.BUSY:
            if self._handshake is not None and not self._handshake.done():
                self._handshake.cancel()
            if self._raw is not None:
                self._raw.abort()
            self._release()

    def _expect_head(self) -> None:
        self.phase = Phase.HEAD
        self._arm(self._listener.limits.header_timeout, "header_timeout")

    def _arm(self, seconds: float, reason: str) -> None:
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._expire, reason)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, reason: str) -> None:
        self._timer = None
        if self.phase is Phase.BUSY or self._raw is None:
            return
        if self._tls is not None and self._tls.get_write_buffer_size() > 0:
            # The last answer is still going out to a slow reader: not idle yet.
            self._arm(self._listener.limits.idle_timeout, reason)
            return
        self._listener.closed(reason)
        # Abort the TCP side: a TLS close would wait for the client's close_notify.
        self._raw.abort()

    def _release(self) -> None:
        if self._counted:
            self._counted = False
            self._listener.counts.release(self._address)
            self._listener.open.dec()
            self._listener.connections.discard(self)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def requests_tracked(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stop a connection's clocks while one of its requests is served."""
    conn = request.transport.get_protocol() if request.transport is not None else None
    if not isinstance(conn, EdgeConnection):
        return await handler(request)
    conn.request_started()
    try:
        return await handler(request)
    finally:
        conn.request_finished()


class EdgeSite(web.BaseSite):
    """An aiohttp site whose connections go through `EdgeConnection`."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        listener: Listener,
        *,
        reuse_port: bool = False,
        backlog: int = 1024,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host, self._port, self._reuse_port = host, port, reuse_port
        self.listener = listener

    @property
    def name(self) -> str:
        return f"https://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        listener = self.listener
        self._server = await loop.create_server(
            lambda: EdgeConnection(listener),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
            reuse_port=self._reuse_port or None,
        )

    async def stop(self) -> None:
        self.listener.abort_all()
        await super().stop()
