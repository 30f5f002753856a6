"""Watch streams: the initial state or replayed history, then live events, one JSON line each.

The stream is chunked `application/json`, flushed per event. Events pass the same selector
translation as the real watch cache (`listing.translate`); bookmarks are sent while idle when
asked for; `timeoutSeconds` ends the stream cleanly; a store `CUT` drops the connection as a
restarting server would, an `OVERFLOW` (a reader too slow for its queue) ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from tenant_proxy.emulator import errors, negotiation, tables
from tenant_proxy.emulator.listing import ListOptions, matcher, translate
from tenant_proxy.emulator.store import CUT, Event, Store, TooOld, Watcher
from tenant_proxy.emulator.types import Attributes, KubeObject, ResourceType

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
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for kind, obj in initial:
                await response.write(encoder.line(kind, obj))
            if error is not None:
                await response.write(_error_line(error))
                return response
            if opts.send_initial_events:
                await response.write(encoder.bookmark(start_rv, initial_end=True))
            live = _Live(store, watcher, encoder, selects, start_rv, opts, bookmark_interval)
            await live.run(request, response)
        except errors.StatusError as err:
            # Headers are gone: like the real server, end the stream with an ERROR event.
            with contextlib.suppress(ConnectionError):
                await response.write(_error_line(err.status()))
        except ConnectionError:
            pass  # the client went away (or the watch was cut): nothing left to tell it
        return response
    finally:
        store.unwatch(watcher)


def _error_line(status: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": "ERROR", "object": status}) + b"\n"


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

    async def run(self, request: web.Request, response: web.StreamResponse) -> None:
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
                if self.opts.allow_bookmarks:
                    await response.write(self.encoder.bookmark(self.store.resource_version))
                continue
            if isinstance(item, str):
                if item == CUT and request.transport is not None:
                    request.transport.close()
                return
            await self._send(response, item)

    async def _send(self, response: web.StreamResponse, event: Event) -> None:
        if event.rv <= self.start_rv:
            return
        out = translate(event, self.selects)
        if out is not None:
            await response.write(self.encoder.line(*out))
