"""Where a filtered watch's events go: a chunked HTTP body, or one WebSocket message each.

The watch (watch_from_cache) makes the event lines; a sink frames them as the API server would
for this client (see websocket_handshake for how it serves a watch over WebSocket). A sink
never waits for its client by itself: `send` only queues on the connection, and the watch
decides how long to wait (`drained`) once the client has left a backlog (`backed_up`), so a
client that keeps up costs no timer and no task per event.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from aiohttp import WSMsgType, web
from aiohttp.http_writer import StreamWriter

from tenant_proxy import status
from tenant_proxy.websocket_handshake import handshake_refusal, is_websocket_upgrade, subprotocols

# After our close frame, how long the client has to answer with its own. The API server does
# not wait at all; a short wait lets a browser see a clean close.
_CLOSE_REPLY_SECONDS = 5.0
# The client is not meant to send anything on a watch; what it sends is read and dropped, and a
# message larger than this ends the watch rather than being buffered.
_CLIENT_MESSAGE_BYTES = 64 * 1024
# aiohttp's WebSocket writer waits for the client by itself past this many bytes; the watch
# does the waiting (bounded), so the writer is told never to.
_NEVER = 2**62


class EventSink(Protocol):
    """The client's side of one filtered watch."""

    @property
    def response(self) -> web.StreamResponse: ...

    async def send(self, line: bytes) -> None:
        """One event (its JSON line, newline included), queued on the connection without
        waiting for the client to read it."""

    def backed_up(self) -> bool:
        """Whether the client has not taken what was sent (the connection's buffer is past
        its high-water mark)."""

    async def drained(self) -> None:
        """Return once the client has taken what was queued."""

    async def client_left(self) -> None:
        """Return once the client has ended the watch itself."""

    async def close(self) -> None:
        """End the stream cleanly, after the last event."""


class _Connection:
    """What both sinks read of the connection: its flow control."""

    __slots__ = ("_protocol", "_writer")

    def __init__(self, request: web.Request) -> None:
        writer = request.writer
        assert isinstance(writer, StreamWriter)  # aiohttp's, whose write can skip the wait
        self._writer, self._protocol = writer, request.protocol

    def backed_up(self) -> bool:
        return self._protocol.writing_paused

    async def drained(self) -> None:
        await self._writer.drain()


class ChunkedSink(_Connection):
    __slots__ = ("response",)

    def __init__(self, request: web.Request, response: web.StreamResponse) -> None:
        super().__init__(request)
        self.response = response

    async def send(self, line: bytes) -> None:
        await self._writer.write(line, drain=False)

    async def client_left(self) -> None:
        # An HTTP client leaves by closing the connection, which cancels the handler instead.
        await asyncio.Event().wait()

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.response.write_eof()


class WebSocketSink(_Connection):
    __slots__ = ("response",)

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        super().__init__(request)
        self.response = ws

    async def send(self, line: bytes) -> None:
        await self.response.send_frame(line, WSMsgType.TEXT)

    async def client_left(self) -> None:
        async for _ignored in self.response:
            pass

    async def close(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.response.close()


def wants_websocket(request: web.Request) -> bool:
    headers = request.headers
    return is_websocket_upgrade(headers.get("Upgrade", ""), headers.get("Connection", ""))


async def open_sink(request: web.Request) -> EventSink:
    """Start the client's answer: 200 and a chunked JSON body, or 101 and WebSocket messages.

    A WebSocket handshake the API server would refuse is refused the same way (as a Status).
    """
    if not wants_websocket(request):
        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        await response.prepare(request)
        return ChunkedSink(request, response)
    ws = check_handshake(request)
    await ws.prepare(request)
    return WebSocketSink(request, ws)


def check_handshake(request: web.Request) -> web.WebSocketResponse:
    """The WebSocket answer to prepare, or the Status the API server's refusal would be:
    checked before anything is asked upstream, so a refused handshake costs no watch."""
    offered = subprotocols(request.headers.getall("Sec-WebSocket-Protocol", []))
    ws = web.WebSocketResponse(
        protocols=offered,
        compress=False,
        timeout=_CLOSE_REPLY_SECONDS,
        max_msg_size=_CLIENT_MESSAGE_BYTES,
        writer_limit=_NEVER,
    )
    if not ws.can_prepare(request).ok:
        raise status.bad_request("malformed WebSocket handshake")
    headers = request.headers
    refusal = handshake_refusal(
        headers.get("Sec-WebSocket-Version", ""), headers.get("Origin", ""), offered
    )
    if refusal is not None:
        raise refusal
    return ws
