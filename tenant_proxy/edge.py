"""The edge of a TLS listener: each TCP connection from accept to close, bounded in count and time.

kube-apiserver (Go's net/http behind k8s.io/apiserver's secure serving) gives a connection 32 s
for its TLS handshake and for each request head, and 90 s idle between requests; long requests
(watches, exec, port-forward, upgrades) are never cut, since none of these clocks runs while a
request is being served. aiohttp alone has one idle timer (one hour by default) and no handshake
timeout or connection cap, so a client that handshakes and sends nothing, or half a head, holds
a connection for an hour. Here the listener accepts plain TCP itself, counts it against the caps
(or closes it at once), runs the handshake (`loop.connect_accepted_socket`) under its own clock,
then hands the TLS transport to aiohttp's request handler through `EdgeConnection`, which
forwards every event and keeps the clocks. Request start and end reach it from the app's
middleware (`requests_tracked`). (`loop.start_tls` on an accepted transport would be simpler, but
uvloop then hands the ClientHello to the old protocol.) A body the proxy refused is settled there
too (refused_bodies): a short rest dropped, a long one never read; an address whose connections
keep ending that way has its next handshakes paced (edge_admission.ReconnectPacing).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from aiohttp import web

from tenant_proxy.edge_admission import ConnectionCounts, ReconnectPacing
from tenant_proxy.memory_trim import MemoryTrim
from tenant_proxy.observability.metrics import Metrics
from tenant_proxy.refused_bodies import (
    DISCARD_LIMIT,
    RESET_DELAY,
    HoldingTransport,
    discard,
    worth_discarding,
)

log = logging.getLogger("tenant_proxy.edge")


@dataclass(frozen=True)
class EdgeLimits:
    """Clocks and caps of one listener (from `limits` in the settings)."""

    handshake_timeout: float = 32.0
    header_timeout: float = 32.0
    idle_timeout: float = 90.0
    max_connections: int = 8192
    max_per_address: int = 1024  # 0: no cap
    # Paced reconnections of an address whose connections were closed unread; 0: never.
    reconnect_rate: float = 0.0
    reconnect_burst: int = 1


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
        self.pacing = ReconnectPacing(limits.reconnect_rate, limits.reconnect_burst)
        self.open = metrics.connections_open.labels(name)
        self._refused, self._closed = metrics.connections_refused, metrics.connections_closed
        self._delayed = metrics.handshakes_delayed.labels(name)
        self.handshakes: set[asyncio.Task[None]] = set()
        self.closing = False
        self._trim = MemoryTrim()

    def refused(self, reason: str) -> None:
        self._refused.labels(self.name, reason).inc()

    def closed(self, reason: str) -> None:
        self._closed.labels(self.name, reason).inc()

    async def accept(self, sock: socket.socket) -> None:
        """Accept connections on `sock` until cancelled: count each in, or close it at once."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(sock)
            except OSError as exc:
                # Out of file descriptors, or the peer gone before accept: keep serving.
                log.warning("accept failed: %s", exc.strerror or exc)
                await asyncio.sleep(0.05)  # EMFILE would spin: give closing connections a turn
                continue
            address = str(peer[0]) if isinstance(peer, tuple) else ""
            wait = self._admit(address, loop.time())
            if isinstance(wait, str):
                self.refused(wait)
                conn.close()
                continue
            if wait > 0:
                self._delayed.inc()
            self.open.inc()
            self._trim.after_admit(self.counts.total)
            task = loop.create_task(self._handshake(conn, address, wait))
            self.handshakes.add(task)
            task.add_done_callback(self.handshakes.discard)

    def _admit(self, address: str, now: float) -> float | str:
        """Seconds this connection's handshake waits for its address's turn, or why it is
        refused."""
        if self.closing:
            return "draining"
        if (refusal := self.counts.admit(address)) is not None:
            return refusal
        wait = self.pacing.turn(address, now, self.limits.handshake_timeout)
        if wait is None:
            # Its turn would come after its handshake clock ran out: refused now, not then.
            self.counts.release(address)
            return "paced"
        return wait

    async def _handshake(self, conn: socket.socket, address: str, wait: float) -> None:
        loop = asyncio.get_running_loop()
        limit = self.limits.handshake_timeout
        edge = EdgeConnection(self, address)
        try:
            if wait > 0:
                await asyncio.sleep(wait)  # its address's turn (the ClientHello waits unread)
            async with asyncio.timeout(limit):
                # The loop's own handshake timeout is a backstop: ours fires first and counts.
                await loop.connect_accepted_socket(
                    lambda: edge, conn, ssl=self.context, ssl_handshake_timeout=limit + 5
                )
        except TimeoutError:
            self._give_up(edge, conn, "tls_handshake_timeout")
        except asyncio.CancelledError:
            self._give_up(edge, conn, "draining")
            raise
        except Exception:
            # The client's doing (not TLS, no shared cipher, reset): whatever the loop raised,
            # the connection is given up and its count released.
            self._give_up(edge, conn, "tls_handshake_failed")

    def _give_up(self, edge: EdgeConnection, conn: socket.socket, reason: str) -> None:
        self.closed(reason)
        if edge.connected:
            edge.abort()  # it was handed over just before: its connection_lost releases it
            return
        conn.close()  # the loop closed its transport already; the socket may be ours still
        self.release(edge.address)

    def release(self, address: str) -> None:
        self.counts.release(address)
        self.open.dec()
        self._trim.after_release(self.counts.total)

    def stop(self) -> None:
        """On drain: handshakes in progress end now (served connections are aiohttp's)."""
        self.closing = True
        for task in list(self.handshakes):
            task.cancel()


class EdgeConnection(asyncio.Protocol):
    """One TLS connection, handshake done: every event goes on to aiohttp's request handler,
    and the head and idle clocks run while no request is being served."""

    def __init__(self, listener: Listener, address: str) -> None:
        self._listener, self.address = listener, address
        self.connected = False
        self._tls: asyncio.Transport | None = None
        self._handler: asyncio.Protocol | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.phase = Phase.HANDSHAKE
        self._busy = 0
        self._ending = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport instances, but have their methods.
        self._tls = cast(asyncio.Transport, transport)
        self.connected = True
        self._handler = self._listener.handler_factory()
        self._handler.connection_made(HoldingTransport(self._tls, lambda: self._ending))
        self._expect_head()

    def data_received(self, data: bytes) -> None:
        if self.phase is Phase.IDLE:
            self._expect_head()
        if self._handler is not None:
            self._handler.data_received(data)

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
        if self._tls is not None:
            self._tls = None
            self._listener.release(self.address)

    def abort(self) -> None:
        if self._tls is not None:
            self._tls.abort()

    def end_unread(self) -> None:
        """The rest of a refused body is never read, nor decrypted (see refused_bodies): reading
        stops now, even from the socket (the client's sending stalls); the answer goes out, and
        the connection is reset after RESET_DELAY."""
        if self._tls is None or self._ending:
            return
        self._ending = True
        self._listener.pacing.closed_unread(self.address, asyncio.get_running_loop().time())
        self._tls.pause_reading()
        # A TLS transport reads ahead of its protocol (256 KiB); a high-water mark of 0 stops
        # that too (both asyncio's and uvloop's have it, outside the Transport interface).
        stop_reading_ahead = getattr(self._tls, "set_read_buffer_limits", None)
        if stop_reading_ahead is not None:
            stop_reading_ahead(0)
        asyncio.get_running_loop().call_later(RESET_DELAY, self.abort)

    @property
    def discard_timeout(self) -> float:
        return self._listener.limits.header_timeout

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
        if self.phase is Phase.BUSY or self._tls is None:
            return
        if self._tls.get_write_buffer_size() > 0:
            # The last answer is still going out to a slow reader: not idle yet.
            self._arm(self._listener.limits.idle_timeout, reason)
            return
        self._listener.closed(reason)
        # Abort: a TLS close would wait for the client's close_notify.
        self._tls.abort()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def requests_tracked(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stop a connection's clocks while one of its requests is served."""
    conn = request.transport.get_protocol() if request.transport is not None else None
    if not isinstance(conn, EdgeConnection):
        return await handler(request)
    conn.request_started()
    try:
        response = await handler(request)
        if request.body_exists and not request.content.is_eof():
            await _settle_unread_body(request, response, conn)
    finally:
        conn.request_finished()
    return response


async def _settle_unread_body(
    request: web.Request, response: web.StreamResponse, conn: EdgeConnection
) -> None:
    """Discard a short rest of the body after the answer and keep the connection; or end it
    without reading on (see refused_bodies)."""
    received = request.content.total_bytes
    if response.keep_alive is not False and worth_discarding(request.content_length, received):
        # The answer first, as Go: the client may wait for it before sending the rest.
        await response.prepare(request)
        await response.write_eof()
        # A client that stops sending is given the head's clock, then cut.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(conn.discard_timeout):
                if await discard(request.content, DISCARD_LIMIT):
                    return
    elif not response.prepared:
        response.force_close()  # the answer says `Connection: close`, as Go's does
    conn.end_unread()


class _Accepting(asyncio.AbstractServer):
    """The listening socket and its accept task, as aiohttp's sites expect a server."""

    def __init__(self, sock: socket.socket, task: asyncio.Task[None]) -> None:
        self._sock, self._task = sock, task

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._sock.fileno() < 0 else (self._sock,)

    def close(self) -> None:
        self._task.cancel()
        # Closed once the accept has stopped waiting on it (the loop still polls it until then).
        self._task.add_done_callback(lambda _task: self._sock.close())

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._task.get_loop()

    def is_serving(self) -> bool:
        return not self._task.done()

    async def start_serving(self) -> None:
        return None

    async def serve_forever(self) -> None:
        await asyncio.wait([self._task])

    async def wait_closed(self) -> None:
        await asyncio.wait([self._task])


class EdgeSite(web.BaseSite):
    """An aiohttp site whose connections are accepted, counted and handshaken by a `Listener`."""

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
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.create_server(
            (self._host, self._port),
            family=family,
            backlog=self._backlog,
            reuse_port=self._reuse_port,
        )
        sock.setblocking(False)
        task = asyncio.get_running_loop().create_task(self.listener.accept(sock))
        self._server = _Accepting(sock, task)

    async def stop(self) -> None:
        await super().stop()
        self.listener.stop()
