"""Watch streams: the initial state or replayed history, then live events, one JSON line each.

The stream is chunked `application/json`, flushed per event, or, for a WebSocket request, one
message per event (`websocket_sink`). Events pass the same selector translation as the real watch
cache (`listing.translate`); bookmarks are sent while idle when asked for; `timeoutSeconds` ends
the stream cleanly; a store `CUT` drops the connection as a restarting server would, an
`OVERFLOW` (a reader too slow for its queue) ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from aiohttp import WSMsgType, web

from tenant_proxy.emulator import errors, negotiation, tables
from tenant_proxy.emulator.listing import ListOptions, matcher, translate
from tenant_proxy.emulator.store import CUT, Event, Store, TooOld, Watcher
from tenant_proxy.emulator.types import Attributes, KubeObject, ResourceType
from tenant_proxy.emulator.upgrades import offered_protocols

TableRenderer = Callable[[list[KubeObject], dict[str, Any], bool], Any]
"""(objects, list metadata, with columns) -> a Table in the negotiated version."""

Initial = tuple[int, list[tuple[str, KubeObject]], dict[str, Any] | None]
"""(resourceVersion the stream starts after, events to send first, ERROR Status or None)."""


class EventEncoder:
    """Watch event lines in the negotiated format; Table columns only on the first event."""

    def __init__(self, rt: ResourceType, fmt: negotiation.Format, table: TableRenderer) -> None:
        self.rt, self.fmt, self.table = rt, fmt, table
        self.first = True

    def line(self, kind: str, obj: KubeObject) -> bytes:
        payload: Any = obj
        if self.fmt.kind == "table":
            meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            payload = self.table([obj], meta, self.first)
            self.first = False
        elif self.fmt.kind == "partial":
            payload = tables.partial_metadata(obj, self.fmt.version)
        return orjson.dumps({"type": kind, "object": payload}) + b"\n"

    def bookmark(self, rv: int, initial_end: bool = False) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        meta_version = f"meta.k8s.io/{self.fmt.version}"
        obj: dict[str, Any]
        if self.fmt.kind == "table":
            obj = {
                "kind": "Table",
                "apiVersion": meta_version,
                "metadata": meta,
                "columnDefinitions": None,
                "rows": [],
            }
        elif self.fmt.kind == "partial":
            obj = {"kind": "PartialObjectMetadata", "apiVersion": meta_version, "metadata": meta}
        else:
            obj = {"kind": self.rt.kind, "apiVersion": self.rt.api_version, "metadata": meta}
        return orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"


def predicate(
    rt: ResourceType, attrs: Attributes, opts: ListOptions
) -> Callable[[KubeObject], bool]:
    """What the watch selects: its namespace, its named object, its selectors."""
    selected = matcher(rt, opts)
    ns = attrs.namespace if rt.namespaced else ""
    name = attrs.name

    def selects(obj: KubeObject) -> bool:
        meta = obj.get("metadata", {})
        if ns and meta.get("namespace") != ns:
            return False
        if name and meta.get("name") != name:
            return False
        return selected(obj)

    return selects


def initial_events(
    store: Store,
    rt: ResourceType,
    attrs: Attributes,
    opts: ListOptions,
    selects: Callable[[KubeObject], bool],
) -> Initial:
    """ADDED for the current state (no rv, "0", sendInitialEvents) or the history after rv."""
    ns = attrs.namespace if rt.namespaced else None
    current = store.resource_version
    rv_text = opts.resource_version
    if rv_text in ("", "0") or opts.send_initial_events:
        objs = store.list_objects(rt.group, rt.plural, ns)
        return current, [("ADDED", o) for o in objs if selects(o)], None
    try:
        asked = int(rv_text)
    except ValueError:
        raise errors.bad_request(f"invalid resource version: {rv_text}") from None
    try:
        events = store.events_since(rt.group, rt.plural, asked)
    except TooOld as exc:
        return current, [], errors.expired(str(exc)).status()
    out = [t for t in (translate(e, selects) for e in events) if t is not None]
    return max(current, asked), out, None


async def serve(
    request: web.Request,
    store: Store,
    rt: ResourceType,
    attrs: Attributes,
    opts: ListOptions,
    encoder: EventEncoder,
    bookmark_interval: float,
) -> web.StreamResponse:
    """Answer a watch request; returns once the stream has ended."""
    selects = predicate(rt, attrs, opts)
    # Registering and reading the initial state happen with no await in between, so no
    # write can fall between them.
    watcher = store.watch(rt.group, rt.plural)
    try:
        start_rv, initial, error = initial_events(store, rt, attrs, opts, selects)
        sink: Sink
        if is_websocket_request(request):
            refusal = websocket_refusal(request)
            if refusal is not None:
                return refusal
            sink = await websocket_sink(request)
        else:
            sink = await chunked_sink(request)
        live = _Live(store, watcher, encoder, selects, start_rv, opts, bookmark_interval)
        await sink.until_client_leaves(_stream(sink, encoder, initial, error, opts, live))
        await sink.end()
        return sink.response
    finally:
        store.unwatch(watcher)


async def _stream(
    sink: Sink,
    encoder: EventEncoder,
    initial: list[tuple[str, KubeObject]],
    error: dict[str, Any] | None,
    opts: ListOptions,
    live: _Live,
) -> None:
    try:
        for kind, obj in initial:
            await sink.send(encoder.line(kind, obj))
        if error is not None:
            await sink.send(_error_line(error))
            return
        if opts.send_initial_events:
            await sink.send(encoder.bookmark(live.start_rv, initial_end=True))
        await live.run(sink)
    except errors.StatusError as err:
        # Headers are gone: like the real server, end the stream with an ERROR event.
        with contextlib.suppress(ConnectionError):
            await sink.send(_error_line(err.status()))
    except ConnectionError:
        pass  # the client went away (or the watch was cut): nothing left to tell it


def _error_line(status: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": "ERROR", "object": status}) + b"\n"


# --- where events go: a chunked HTTP body or WebSocket messages ------------------------------


class Sink(Protocol):
    """The client side of one watch: each event's bytes out, one at a time."""

    @property
    def response(self) -> web.StreamResponse: ...

    async def send(self, event: bytes) -> None: ...

    def cut(self) -> None:
        """Drop the connection, as a server that stops would."""

    async def until_client_leaves(self, streaming: Awaitable[None]) -> None:
        """Run `streaming`; stop it early if the client ends the watch."""

    async def end(self) -> None:
        """End the stream cleanly."""


class _Chunked:
    def __init__(self, response: web.StreamResponse, request: web.Request) -> None:
        self.response, self._request = response, request

    async def send(self, event: bytes) -> None:
        await self.response.write(event)

    def cut(self) -> None:
        if self._request.transport is not None:
            self._request.transport.close()

    async def until_client_leaves(self, streaming: Awaitable[None]) -> None:
        await streaming  # a client that leaves cancels the handler (handler_cancellation)

    async def end(self) -> None:
        pass  # returning from the handler ends the chunked body


async def chunked_sink(request: web.Request) -> Sink:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    return _Chunked(response, request)


# kube-apiserver serves a watch over WebSocket with golang.org/x/net/websocket (k8s.io/apiserver
# endpoints/handlers/watch.go, WatchServer.HandleWS), and that library decides the handshake:
# - `websocket.Handler` checks Origin: none, or one url.ParseRequestURI refuses, is a bare
#   "403 Forbidden" (no body), so only browsers (which always send Origin) get through;
# - Sec-WebSocket-Protocol: the bearer-token subprotocol is removed by authentication; what
#   is left is echoed if it is exactly one name (any name: nothing is decoded or encoded, so
#   `base64.binary.k8s.io` still gets plain JSON), absent if none, "400 Bad Request" if more;
# - no extension is negotiated (no permessage-deflate);
# - each event is one message holding exactly the bytes of its line in the HTTP stream (JSON
#   and its newline), text-framed for JSON (UseTextFraming), binary for protobuf;
# - messages from the client are read and ignored; its close, or the connection's end, stops
#   the watch; the end of the stream (timeout, ERROR, end of results) is a close frame, 1000.
_CONNECTION_UPGRADE = re.compile(r"(^|.*,\s*)upgrade($|\s*,)")
# What url.ParseRequestURI takes, to the first character: "*", a path, or a scheme; never a
# control character anywhere.
_REQUEST_URI = re.compile(r"(\*$|/|[A-Za-z][A-Za-z0-9+.-]*:)[^\x00-\x1f\x7f]*$")
_CLOSE_REPLY_SECONDS = 5.0  # how long to wait for the client's close frame after ours


def is_websocket_request(request: web.Request) -> bool:
    headers = request.headers
    return is_websocket_upgrade(headers.get("Upgrade", ""), headers.get("Connection", ""))


def is_websocket_upgrade(upgrade: str, connection: str) -> bool:
    """wsstream.IsWebSocketRequest, on the first Upgrade and Connection headers."""
    return upgrade.lower() == "websocket" and bool(_CONNECTION_UPGRADE.match(connection.lower()))


def origin_accepted(origin: str) -> bool:
    """x/net/websocket's checkOrigin: present, and a request URI (a scheme, or a path)."""
    return bool(_REQUEST_URI.match(origin))


def websocket_refusal(request: web.Request) -> web.Response | None:
    """x/net/websocket's own refusals, in its order: bare status lines, then the connection
    closes (a malformed handshake, Origin, then subprotocols)."""
    # x/net knows version 13 only, where aiohttp takes drafts 7 and 8 too.
    version = request.headers.get("Sec-WebSocket-Version")
    handshake = web.WebSocketResponse(protocols=offered_protocols(request))
    if version != "13" or not handshake.can_prepare(request).ok:
        return _bare(400)
    if not origin_accepted(request.headers.get("Origin", "")):
        return _bare(403)
    if len(offered_protocols(request)) > 1:
        return _bare(400)
    return None


def _bare(code: int) -> web.Response:
    response = web.Response(status=code)
    response.force_close()
    return response


class _WebSocket:
    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.response, self._ws, self._request = ws, ws, request

    async def send(self, event: bytes) -> None:
        await self._ws.send_frame(event, WSMsgType.TEXT)

    def cut(self) -> None:
        if self._request.transport is not None:
            self._request.transport.close()

    async def until_client_leaves(self, streaming: Awaitable[None]) -> None:
        work = asyncio.ensure_future(streaming)
        leaving = asyncio.ensure_future(self._ignore_receives())
        try:
            await asyncio.wait((work, leaving), return_when=asyncio.FIRST_COMPLETED)
        finally:
            work.cancel()
            leaving.cancel()
        await asyncio.wait((work, leaving))
        for task in (work, leaving):
            if not task.cancelled() and (failure := task.exception()) is not None:
                raise failure

    async def _ignore_receives(self) -> None:
        async for _ in self._ws:
            pass

    async def end(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self._ws.close()


async def websocket_sink(request: web.Request) -> Sink:
    """Accept the upgrade (once `websocket_refusal` found nothing to refuse)."""
    ws = web.WebSocketResponse(
        protocols=offered_protocols(request), compress=False, timeout=_CLOSE_REPLY_SECONDS
    )
    await ws.prepare(request)
    return _WebSocket(ws, request)


class _Live:
    """The live part of a watch: queued events, idle bookmarks, the timeout."""

    def __init__(
        self,
        store: Store,
        watcher: Watcher,
        encoder: EventEncoder,
        selects: Callable[[KubeObject], bool],
        start_rv: int,
        opts: ListOptions,
        bookmark_interval: float,
    ) -> None:
        self.store, self.watcher, self.encoder, self.selects = store, watcher, encoder, selects
        self.start_rv, self.opts, self.bookmark_interval = start_rv, opts, bookmark_interval

    def _wait(self, deadline: float | None, now: float) -> float | None:
        wait = self.bookmark_interval if self.opts.allow_bookmarks else None
        if deadline is None:
            return wait
        left = deadline - now
        return min(wait, left) if wait is not None else left

    async def run(self, sink: Sink) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.opts.timeout_seconds
        deadline = loop.time() + timeout if timeout else None
        while True:
            wait = self._wait(deadline, loop.time())
            if wait is not None and wait <= 0:
                return
            try:
                item = await asyncio.wait_for(self.watcher.queue.get(), wait)
            except TimeoutError:
                # A bookmark at rv B promises every event up to B was sent (the cacher's
                # bookmark carries its cache's rv, which events reach first): never one while
                # events are still queued for this watch.
                if self.opts.allow_bookmarks and self.watcher.queue.empty():
                    await sink.send(self.encoder.bookmark(self.store.resource_version))
                continue
            if isinstance(item, str):
                if item == CUT:
                    sink.cut()
                return
            await self._send(sink, item)

    async def _send(self, sink: Sink, event: Event) -> None:
        if event.rv <= self.start_rv:
            return
        out = translate(event, self.selects)
        if out is not None:
            await sink.send(self.encoder.line(*out))
