"""Upgraded connections: port-forward over SPDY or WebSocket, and any other upgrade echoed.

A port-forward or `Upgrade: SPDY/3.1` request is answered 101 and every byte is echoed back,
enough to prove a proxy splices upgraded connections.
"""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType, web

from tenant_proxy.emulator import errors, portforward
from tenant_proxy.emulator.identity import WEBSOCKET_BEARER_PREFIX
from tenant_proxy.emulator.pod_logs import meta
from tenant_proxy.emulator.types import Attributes, KubeObject


def is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def is_spdy(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower().startswith("spdy/")


def offered_protocols(request: web.Request) -> list[str]:
    """Offered subprotocols, without bearer tokens sent as subprotocols (never echoed)."""
    header = ",".join(request.headers.getall("Sec-WebSocket-Protocol", []))
    offered = (p.strip() for p in header.split(","))
    return [p for p in offered if p and not p.startswith(WEBSOCKET_BEARER_PREFIX)]


class _RawReader:
    """Takes the connection's bytes after a 101, in place of aiohttp's HTTP parser.

    Like a real peer it applies back-pressure: past `high` unread bytes it stops reading.
    """

    def __init__(self, transport: asyncio.Transport, high: int = 1 << 20) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._transport, self._high, self._pending, self._paused = transport, high, 0, False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.queue.put_nowait(bytes(data))
        self._pending += len(data)
        if self._pending > self._high and not self._paused:
            self._transport.pause_reading()
            self._paused = True
        return False, b""

    async def get(self) -> bytes | None:
        data = await self.queue.get()
        if data is not None:
            self._pending -= len(data)
            if self._paused and self._pending < self._high // 2:
                self._transport.resume_reading()
                self._paused = False
        return data

    def feed_eof(self) -> None:
        self.queue.put_nowait(None)


async def _websocket_echo(request: web.Request) -> web.WebSocketResponse:
    offered = offered_protocols(request)
    ws = web.WebSocketResponse(protocols=offered[:1])
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
        elif msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
    return ws


async def _upgrade_raw(
    request: web.Request, version: str | None
) -> tuple[web.StreamResponse, _RawReader | None]:
    """Answer 101 and take the connection's bytes from aiohttp's HTTP parser."""
    headers = {"Connection": "Upgrade", "Upgrade": request.headers.get("Upgrade", "SPDY/3.1")}
    if version:
        headers["X-Stream-Protocol-Version"] = version
    response = web.StreamResponse(status=101, headers=headers)
    response.force_close()
    await response.prepare(request)
    if request.transport is None:
        return response, None
    reader = _RawReader(request.transport)
    request.protocol.set_parser(reader)  # type: ignore[arg-type]
    return response, reader


async def _raw_write(request: web.Request, data: bytes) -> None:
    if request.transport is None or request.transport.is_closing():
        raise ConnectionResetError("the client has gone")
    request.transport.write(data)
    await request.protocol._drain_helper()  # wait for the reader, as a socket would


async def _raw_echo(request: web.Request) -> web.StreamResponse:
    versions = request.headers.getall("X-Stream-Protocol-Version", [])
    response, reader = await _upgrade_raw(request, versions[0] if versions else None)
    if reader is None:
        return response
    while (data := await reader.get()) is not None:
        try:
            await _raw_write(request, data)
        except ConnectionError:
            break
    return response


async def portforward_or_spdy(request: web.Request, attrs: Attributes) -> web.StreamResponse:
    """Any other `Upgrade: SPDY/3.1` request (exec, attach): 101, then every byte is echoed back
    until the client closes; a WebSocket one has its messages echoed."""
    if is_websocket(request):
        return await _websocket_echo(request)
    if is_spdy(request):
        return await _raw_echo(request)
    raise errors.bad_request("Upgrade request required")


async def pod_portforward(
    request: web.Request, pod: KubeObject, echo: portforward.EchoServer
) -> web.StreamResponse:
    """`pods/<name>/portforward`: portforward.k8s.io over SPDY, on the upgraded connection or
    tunnelled in WebSocket binary messages (kubectl 1.31+ tries the tunnel first, and falls
    back to SPDY when the upgrade fails: client-go `tools/portforward/fallback_dialer.go`)."""
    pod_meta = meta(pod)
    session = portforward.Session(
        f"{pod_meta.get('namespace', '')}/{pod_meta.get('name', '')}",
        portforward.declared_ports(pod),
        echo.connect,
    )
    if is_websocket(request):
        if portforward.TUNNELED not in offered_protocols(request):
            return await _websocket_echo(request)  # another subprotocol: not emulated
        ws = web.WebSocketResponse(protocols=(portforward.TUNNELED,))
        await ws.prepare(request)
        await session.serve(lambda: _binary_message(ws), ws.send_bytes)
        await ws.close()
        return ws
    if not is_spdy(request):
        raise errors.bad_request("Upgrade request required")
    response, reader = await _upgrade_raw(request, portforward.PROTOCOL)
    if reader is not None:
        await session.serve(reader.get, lambda data: _raw_write(request, data))
    return response


async def _binary_message(ws: web.WebSocketResponse) -> bytes | None:
    """The next binary message's bytes; None once the socket closes."""
    while True:
        msg = await ws.receive()
        if msg.type == WSMsgType.BINARY:
            return bytes(msg.data)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return None
