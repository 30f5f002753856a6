"""Byte movers: stream a request to the API server and its answer back, and splice upgrades.

Nothing here looks inside a body: bodies are relayed chunk by chunk as they arrive (a watch
event reaches the client as soon as the API server flushed it), never buffered whole.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import aiohttp
import orjson
import yaml
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol

from tenant_proxy import status
from tenant_proxy.headers import strip_response_headers

CHUNK = 64 * 1024
# Headers the proxy recomputes: the relay decides how the body is framed to its own client.
_REFRAMED = frozenset({"content-length", "transfer-encoding"})


class RequestBody:
    """The client's body as a stream, cut once it passes `limit` bytes.

    The cut surfaces in the upstream client as a connection error (aiohttp wraps what the
    stream raises); `overflowed` tells the caller it was ours, so the client gets its 413.
    """

    def __init__(self, request: web.Request, limit: int) -> None:
        self._request, self._limit = request, limit
        self.overflowed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._request.content.iter_chunked(CHUNK):
            seen += len(chunk)
            if seen > self._limit:
                self.overflowed = True
                raise status.too_large(self._limit)
            yield chunk


async def read_body(request: web.Request, limit: int) -> bytes:
    """A small body read whole (access reviews), refused with 413 past `limit`."""
    check_declared_length(request, limit)
    body = bytearray()
    async for chunk in RequestBody(request, limit):
        body += chunk
    return bytes(body)


def check_declared_length(request: web.Request, limit: int) -> None:
    """Refuse early what says it is too large, or encoded: nothing is read or sent upstream."""
    if request.body_exists:
        refuse_encoded_body(request.headers.getall("Content-Encoding", []))
    if request.content_length is not None and request.content_length > limit:
        raise status.too_large(limit)


def refuse_encoded_body(content_encodings: list[str]) -> None:
    """415 for a request body with a Content-Encoding other than identity.

    kube-apiserver never decodes a request's Content-Encoding (its handlers read the body as
    sent and decode it by Content-Type: a gzip body is a 400 decode error there), and no
    Kubernetes client compresses requests. Refusing it unread is the safe equivalent: the
    listener does not inflate bodies either (auto_decompress off) and reads no more of a
    refused one (edge.py), so a compression bomb costs the proxy its request head only.
    """
    codings = {c.strip().lower() for value in content_encodings for c in value.split(",")}
    if codings - {"", "identity"}:
        # As kube-apiserver's own 415 (transcript patch-bad-content-type).
        raise status.ApiError(415, "UnsupportedMediaType", "415: Unsupported Media Type", {})


def json_response(body: bytes, status: int = 200, *, as_yaml: bool = False) -> web.Response:
    """An answer the proxy composed itself (rewritten lists, amended reviews, Statuses), in
    JSON, or in YAML for a client that prefers it (the API server serves reads both ways)."""
    if as_yaml:
        text = yaml.safe_dump(orjson.loads(body), sort_keys=False)
        return web.Response(status=status, body=text.encode(), content_type="application/yaml")
    return web.Response(status=status, body=body, content_type="application/json")


def read_headers(request: web.Request, accept: str | None = None) -> list[tuple[str, str]]:
    """The headers of a read the proxy makes as itself for `request`: the Accept (the client's
    or `accept`), its User-Agent and Audit-Id; nothing else may shape the proxy's read."""
    headers = [("Accept", accept)] if accept is not None else []
    names = (
        ("User-Agent", "Audit-Id") if accept is not None else ("Accept", "User-Agent", "Audit-Id")
    )
    return headers + [(name, request.headers[name]) for name in names if name in request.headers]


def decode_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]


def upstream_headers(resp: aiohttp.ClientResponse) -> list[tuple[str, str]]:
    return decode_headers(resp.raw_headers)


async def relay(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    draining: Callable[[], bool] = lambda: False,
    *,
    close: bool = False,
) -> web.StreamResponse:
    """Stream `upstream`'s status, headers and body to the client as they arrive.

    If the API server's side ends abruptly the client's side does too; only a drain, which
    closes the upstream side on purpose, ends the client's stream cleanly.
    """
    resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
    keep_length = upstream.content_length is not None
    for name, value in strip_response_headers(upstream_headers(upstream)):
        if name.lower() in _REFRAMED and not (keep_length and name.lower() == "content-length"):
            continue
        resp.headers.add(name, value)
    if close:
        resp.force_close()
    await resp.prepare(request)
    try:
        async for chunk in upstream.content.iter_any():
            await resp.write(chunk)
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
        if not draining():
            # The API server went away mid-body (a restart ends watches this way): end the
            # client's stream abruptly too, so it re-lists or re-watches; never invent an end.
            if request.transport is not None:
                request.transport.close()
            return resp
    await resp.write_eof()
    return resp


class _RawQueue:
    """A 'parser' for aiohttp protocols that hands raw bytes of an upgraded connection over.

    Reading is paused while more than `high` bytes wait, so a slow peer cannot make the
    proxy buffer without bound.
    """

    def __init__(self, transport: asyncio.Transport | None, high: int = 1 << 20) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._transport, self._high, self._pending = transport, high, 0
        self._paused = False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._queue.put_nowait(bytes(data))
        self._pending += len(data)
        if self._pending > self._high and self._transport is not None and not self._paused:
            self._transport.pause_reading()
            self._paused = True
        return False, b""

    def feed_eof(self) -> None:
        self._queue.put_nowait(None)

    # aiohttp's client protocol calls these on its payload object.
    def set_exception(self, exc: BaseException, *args: Any) -> None:
        self._queue.put_nowait(None)

    async def get(self) -> bytes | None:
        data = await self._queue.get()
        if data is not None:
            self._pending -= len(data)
            if self._paused and self._pending < self._high // 2 and self._transport is not None:
                self._transport.resume_reading()
                self._paused = False
        return data


async def _pump(
    source: _RawQueue, sink: asyncio.BaseTransport | None, sink_protocol: BaseProtocol
) -> None:
    while (data := await source.get()) is not None:
        if sink is None or sink.is_closing():
            return
        sink.write(data)  # type: ignore[attr-defined]
        # Back-pressure: while the sink's peer does not read, stop taking from the source
        # (whose queue then pauses reading from its own peer). Without it a peer that
        # never reads makes the proxy buffer everything the other side sends.
        try:
            await sink_protocol._drain_helper()
        except ConnectionError:
            return
    if sink is not None and not sink.is_closing() and sink.can_write_eof():  # type: ignore[attr-defined]
        with contextlib.suppress(OSError, RuntimeError):
            sink.write_eof()  # type: ignore[attr-defined]


async def splice_upgrade(
    request: web.Request, upstream: aiohttp.ClientResponse
) -> web.StreamResponse:
    """After the API server answered 101, send 101 to the client and move bytes both ways.

    Called only on a 101: any other answer is relayed and the connection closed by the
    caller (a half-upgraded connection must never be reused: CVE-2018-1002105).
    """
    conn = upstream.connection
    if conn is None or conn.protocol is None or conn.transport is None:
        raise status.bad_gateway("the API server upgraded but the connection is gone")
    up_transport = conn.transport
    down_transport = request.transport
    from_upstream = _RawQueue(up_transport)
    from_client = _RawQueue(down_transport)
    conn.protocol.set_parser(from_upstream, from_upstream)
    request.protocol.set_parser(from_client)  # type: ignore[arg-type]

    resp = web.StreamResponse(status=101, reason="Switching Protocols")
    for name, value in strip_response_headers(upstream_headers(upstream)):
        if name.lower() not in _REFRAMED:
            resp.headers.add(name, value)
    # Hop-by-hop in general, but a 101 is meaningless without them.
    resp.headers["Connection"] = "Upgrade"
    resp.headers["Upgrade"] = upstream.headers.get("Upgrade", "")
    await resp.prepare(request)
    try:
        _, pending = await asyncio.wait(
            [
                asyncio.ensure_future(_pump(from_client, up_transport, conn.protocol)),
                asyncio.ensure_future(_pump(from_upstream, down_transport, request.protocol)),
            ],
            return_when=asyncio.FIRST_COMPLETED,
        )
        # One side finished: give the other a moment to flush its half-close, then end both.
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        for task in pending:
            task.cancel()
    finally:
        up_transport.close()
        conn.close()
        request.protocol.force_close()
    return resp
