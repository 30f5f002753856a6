"""Serving a Filter plan: get, list and watch of a resource a tenancy rule governs.

The proxy reads with its own credentials (tenants rarely have cluster-wide RBAC) and answers the
caller's share only. A list whose rule is a label selector is pushed down and streamed untouched;
anything else is rewritten by the pure functions of `filtering`. Watches are never pushed down: a
tenancy change must be able to add and remove objects on an open watch, which a fixed upstream
selector cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tenant_proxy import passthrough, status
from tenant_proxy.filtering import pushdown
from tenant_proxy.filtering.lists import NotAList, filter_response
from tenant_proxy.filtering.selectors import SelectorError
from tenant_proxy.filtering.watch import LineFramer, LineTooLong, WatchFilter
from tenant_proxy.identity import Identity
from tenant_proxy.observability import Metrics
from tenant_proxy.requestinfo import RequestInfo
from tenant_proxy.requestinfo import parse_query as classify_query
from tenant_proxy.streams import OpenStreams
from tenant_proxy.tenancy.index import TenancyIndex
from tenant_proxy.tenancy.model import GroupResource, TenantView, owns
from tenant_proxy.upstream import Upstream, UpstreamError

log = logging.getLogger("tenant_proxy.filtered")

_ACCEPT_JSON = "application/json"


@dataclass(frozen=True)
class Shape:
    """How the client wants objects, and what to ask upstream so the proxy can judge them."""

    accept: str  # forwarded upstream
    table: bool
    partial: bool  # PartialObjectMetadata(List) or Table rows reduced to metadata
    include_object: str | None  # upstream includeObject for Tables (None: leave the query as is)
    strip_objects: bool  # client asked includeObject=None


def _media_ranges(accept: str) -> list[str]:
    return [part.strip() for part in accept.split(",") if part.strip()]


def shape_for(accept_header: str | None, info: RequestInfo, full_object: bool) -> Shape:
    """Pure: what to ask upstream for a filtered read, from the client's Accept and query.

    Protobuf is never asked for (the proxy must read the answer): with a JSON alternative the
    client gets JSON, as the API server itself would answer; protobuf alone is 406.
    """
    ranges = _media_ranges(accept_header or _ACCEPT_JSON)
    usable = [r for r in ranges if "protobuf" not in r.lower()]
    if not usable:
        raise status.not_acceptable(
            "only the following media types are accepted: application/json, "
            "application/json;as=Table;v=v1;g=meta.k8s.io"
        )
    first = usable[0].replace(" ", "").lower()
    table = "as=table" in first
    partial = "as=partialobjectmetadata" in first
    client_include = info.query.include_object or "Metadata"
    if table:
        upstream_include = "Object" if full_object else "Metadata"
        if client_include == "Object":
            upstream_include = "Object"
        return Shape(
            accept=",".join(usable),
            table=True,
            partial=client_include != "Object" and full_object,
            include_object=upstream_include,
            strip_objects=client_include == "None",
        )
    if partial and full_object:
        # The rule reads spec fields: ask for whole objects and reduce them here.
        return Shape(_ACCEPT_JSON, False, True, None, False)
    return Shape(",".join(usable), False, False, None, False)


class FilteredReads:
    """Executes Filter plans for the tenant listener."""

    def __init__(
        self,
        index: TenancyIndex,
        upstream: Upstream,
        metrics: Metrics,
        *,
        sync_timeout: float,
        max_event_bytes: int,
        max_list_bytes: int = 512 * 1024 * 1024,
        watch_buffer_events: int = 1000,
        streams: OpenStreams | None = None,
        list_reads: int = 8,
    ) -> None:
        self.index, self.upstream, self.metrics = index, upstream, metrics
        self.streams = streams if streams is not None else OpenStreams()
        # Each rewritten list holds the whole upstream list, decoded: bound how many at once.
        self._list_reads = asyncio.Semaphore(list_reads)
        self._shared_generation = -1
        self._shared: dict[tuple[str, str, str], asyncio.Future[dict[str, Any] | None]] = {}
        self._sync_timeout = sync_timeout
        self._max_event = max_event_bytes
        self._max_list = max_list_bytes
        self._buffer = watch_buffer_events

    async def serve(
        self,
        request: web.Request,
        info: RequestInfo,
        gr: GroupResource,
        view: TenantView,
        identity: Identity,
    ) -> tuple[web.StreamResponse, int]:
        """The response and how many objects were withheld."""
        if not await self.index.wait_synced(self._sync_timeout):
            raise status.service_unavailable("the tenancy index is not synced yet", retry_after=1)
        shape = shape_for(request.headers.get("Accept"), info, view.needs_full_object(gr))

        def keep(obj: Mapping[str, Any]) -> bool:
            return owns(view, gr, obj)

        if info.verb == "get":
            return await self._get(request, info, gr, shape, keep)
        if info.verb == "watch":
            return await self._watch(request, info, gr, shape, identity)
        return await self._list(request, info, gr, shape, view, keep)

    async def read_shared(
        self, path: str, query: str, accept: str, generation: int
    ) -> dict[str, Any] | None:
        """One object read as the proxy, shared by every watch that needs it after the same
        tenancy change (a namespace joining a tenant must not cost one read per open watch)."""
        if generation != self._shared_generation:
            self._shared_generation, self._shared = generation, {}
        key = (path, query, accept)
        if key not in self._shared:
            self._shared[key] = asyncio.ensure_future(self._read_one(path, query, accept))
        shared = self._shared[key]
        try:
            return await asyncio.shield(shared)
        except Exception:
            if self._shared.get(key) is shared:
                del self._shared[key]  # a failure is never shared with later readers
            raise

    async def _read_one(self, path: str, query: str, accept: str) -> dict[str, Any] | None:
        resp = await self.upstream.send("GET", self.upstream.url(path, query), [("Accept", accept)])
        async with resp:
            if resp.status != 200:
                return None
            return single_object(orjson.loads(await resp.read()))

    # -- requests as the proxy ----------------------------------------------------------------
    def _headers(self, request: web.Request, shape: Shape) -> list[tuple[str, str]]:
        headers = [("Accept", shape.accept)]
        for name in ("User-Agent", "Audit-Id"):
            if name in request.headers:
                headers.append((name, request.headers[name]))
        return headers

    def _query(self, info: RequestInfo, shape: Shape, selector: str | None) -> str:
        changes: dict[str, str | None] = {}
        if selector is not None:
            changes["labelSelector"] = selector
        if shape.include_object is not None:
            changes["includeObject"] = shape.include_object
        return info.query.with_params(changes) if changes else info.query.raw

    async def _read_body(self, resp: aiohttp.ClientResponse) -> bytes:
        if resp.content_length is not None and resp.content_length > self._max_list:
            raise status.bad_gateway("the API server's answer is larger than the proxy reads")
        body = bytearray()
        async for chunk in resp.content.iter_chunked(256 * 1024):
            body += chunk
            if len(body) > self._max_list:
                raise status.bad_gateway("the API server's answer is larger than the proxy reads")
        return bytes(body)

    # -- get ----------------------------------------------------------------------------------
    async def _get(
        self, request: web.Request, info: RequestInfo, gr: GroupResource, shape: Shape, keep: Any
    ) -> tuple[web.StreamResponse, int]:
        url = self.upstream.url(info.path, self._query(info, shape, None))
        resp = await self.upstream.send("GET", url, self._headers(request, shape))
        async with resp:
            if resp.status != 200:
                # 404 (or any error) is the API server's own answer about a name: relay it.
                if resp.status == 404:
                    raise _not_found(gr, info.name)
                return await passthrough.relay(request, resp), 0
            body = await self._read_body(resp)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise status.bad_gateway("the API server answered a read with non-JSON") from exc
        if doc.get("kind") == "Table":
            filtered, dropped = filter_response(
                body, keep, strip_objects=shape.strip_objects, metadata_only=shape.partial
            )
            if dropped or not orjson.loads(filtered).get("rows"):
                raise _not_found(gr, info.name)
            return _json_response(filtered), 0
        if not keep(doc):
            # Exactly the API server's answer for a missing object: existence never leaks.
            raise _not_found(gr, info.name)
        if shape.partial and doc.get("kind") != "PartialObjectMetadata":
            from tenant_proxy.filtering.forms import partial_metadata

            doc = partial_metadata(doc)
            body = orjson.dumps(doc)
        return _json_response(body), 0

    # -- list ---------------------------------------------------------------------------------
    async def _list(
        self,
        request: web.Request,
        info: RequestInfo,
        gr: GroupResource,
        shape: Shape,
        view: TenantView,
        keep: Any,
    ) -> tuple[web.StreamResponse, int]:
        try:
            decision = pushdown.plan_read(view, gr, info.query.label_selector)
        except SelectorError as exc:
            raise status.bad_request(str(exc)) from None
        if isinstance(decision, pushdown.Nothing):
            return await self._empty_list(request, info, shape)
        selector = decision.label_selector if isinstance(decision, pushdown.PushDown) else None
        query = self._query(info, shape, selector)
        if selector is None:
            # Never page an unfiltered read for a tenant: the API server's continue token
            # names the last object of the page (another tenant's) and remainingItemCount
            # counts the whole cluster. The tenant's share comes back in one answer.
            query = classify_query(query).with_params({"limit": None, "continue": None})
        url = self.upstream.url(info.path, query)
        pushed = selector is not None and not shape.partial and not shape.strip_objects
        if pushed:
            # The API server applies the rule itself: its answer is already the tenant's.
            resp = await self.upstream.send("GET", url, self._headers(request, shape))
            async with resp:
                return await passthrough.relay(request, resp), 0
        async with self._list_reads:
            resp = await self.upstream.send("GET", url, self._headers(request, shape))
            async with resp:
                if resp.status != 200:
                    return await passthrough.relay(request, resp), 0
                body = await self._read_body(resp)
            try:
                with _collector_paused():
                    out, dropped = filter_response(
                        body, keep, strip_objects=shape.strip_objects, metadata_only=shape.partial
                    )
            except NotAList as exc:
                raise status.bad_gateway(f"unexpected list answer: {exc}") from None
            del body
        return _json_response(out), dropped

    async def _empty_list(
        self, request: web.Request, info: RequestInfo, shape: Shape
    ) -> tuple[web.StreamResponse, int]:
        # Ask upstream for a list matching nothing, so kind, apiVersion, resourceVersion and
        # Table columns are the server's own; the impossible selector is never the tenant's.
        impossible = "tenant-proxy.io/none,!tenant-proxy.io/none"
        url = self.upstream.url(info.path, self._query(info, shape, impossible))
        resp = await self.upstream.send("GET", url, self._headers(request, shape))
        async with resp:
            return await passthrough.relay(request, resp), 0

    # -- watch --------------------------------------------------------------------------------
    async def _watch(
        self,
        request: web.Request,
        info: RequestInfo,
        gr: GroupResource,
        shape: Shape,
        identity: Identity,
    ) -> tuple[web.StreamResponse, int]:
        url = self.upstream.url(info.path, self._query(info, shape, None))
        resp = await self.upstream.send("GET", url, self._headers(request, shape))
        async with resp:
            if resp.status != 200:
                return await passthrough.relay(request, resp), 0
            stream = _WatchStream(self, request, info, gr, shape, identity)
            return await stream.run(resp), stream.filter.dropped


class AcrossNamespaces:
    """A cluster-wide list of a namespaced resource (`kubectl get pods -A`, `describe node`).

    Asked first as the caller; where RBAC refuses the cluster-wide list, the tenant gets the
    union of the same list in each of its namespaces, each asked as the caller, so RBAC still
    decides per namespace. Pages are not offered (the union has no single continue token).
    Bounded: at most `parallel` namespaces at once, each answer at most `max_list_bytes`.
    """

    def __init__(
        self, upstream: Upstream, max_list_bytes: int = 64 * 1024 * 1024, parallel: int = 8
    ) -> None:
        self.upstream, self._max = upstream, max_list_bytes
        self._parallel = parallel

    async def serve(
        self,
        request: web.Request,
        info: RequestInfo,
        view: TenantView,
        headers: list[tuple[str, str]],
    ) -> web.StreamResponse | None:
        """The merged answer, or None when not one namespace answered (caller relays its 403)."""
        accept = [
            r
            for r in _media_ranges(request.headers.get("Accept") or _ACCEPT_JSON)
            if "protobuf" not in r.lower()
        ]
        if not accept:
            return None
        # The proxy reads these answers: JSON only, never compressed.
        asked = [h for h in headers if h[0].lower() not in ("accept", "accept-encoding")]
        asked.append(("Accept", ",".join(accept)))
        query = info.query.with_params({"limit": None, "continue": None})
        prefix = (
            "/api/v1" if info.api_prefix == "api" else f"/apis/{info.api_group}/{info.api_version}"
        )
        limit = asyncio.Semaphore(self._parallel)

        async def one(namespace: str) -> dict[str, Any] | None:
            async with limit:
                return await self._one(
                    f"{prefix}/namespaces/{namespace}/{info.resource}", query, asked
                )

        answers = await asyncio.gather(*(one(ns) for ns in sorted(view.namespaces)))
        docs = [doc for doc in answers if doc is not None]
        if not docs:
            return None
        return _json_response(orjson.dumps(merge_lists(docs)))

    async def _one(
        self, path: str, query: str, headers: list[tuple[str, str]]
    ) -> dict[str, Any] | None:
        resp = await self.upstream.send("GET", self.upstream.url(path, query), headers)
        async with resp:
            if resp.status != 200:
                return None
            body = bytearray()
            async for chunk in resp.content.iter_chunked(256 * 1024):
                body += chunk
                if len(body) > self._max:
                    raise status.bad_gateway("a namespace's list is larger than the proxy reads")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        return doc if isinstance(doc, dict) else None


def merge_lists(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One list (or Table) of all items (rows) of same-kind lists, in order. Pure."""
    first = dict(docs[0])
    key = "rows" if first.get("kind") == "Table" else "items"
    first[key] = [item for doc in docs for item in (doc.get(key) or [])]
    # Several lists have no single resourceVersion to resume from.
    first["metadata"] = {"resourceVersion": ""}
    return first


class _WatchStream:
    """One filtered watch: upstream lines and tenancy changes in, filtered events out."""

    def __init__(
        self,
        reads: FilteredReads,
        request: web.Request,
        info: RequestInfo,
        gr: GroupResource,
        shape: Shape,
        identity: Identity,
    ) -> None:
        self.reads, self.request, self.info, self.gr, self.shape = reads, request, info, gr, shape
        self.identity = identity
        # The view and its generation are taken together, now: tenancy may have moved on while
        # the upstream watch was being opened, and a stale view would drop what it now owns.
        self.generation = reads.index.generation
        view = reads.index.view_for(identity)
        # Only what the client holds is remembered (memory follows the tenant's share, not
        # the cluster's); objects a tenancy change reveals are read when it happens.
        self.filter = WatchFilter(
            self._keep(view),
            strip_objects=shape.strip_objects,
            metadata_only=shape.partial,
            remember_hidden=False,
        )
        self.out: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=reads._buffer)

    def _keep(self, view: TenantView | None) -> Any:
        gr = self.gr
        return lambda obj: view is not None and owns(view, gr, obj)

    def _emit(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            try:
                self.out.put_nowait(orjson.dumps(event) + b"\n")
            except asyncio.QueueFull:
                raise _TooSlow from None

    async def run(self, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        resp = web.StreamResponse(status=200)
        resp.content_type = "application/json"
        await resp.prepare(self.request)
        self.reads.metrics.open_watches.labels("tenant", "true").inc()
        forget = self.reads.streams.add(self._end)
        tasks = [
            asyncio.ensure_future(self._read_upstream(upstream)),
            asyncio.ensure_future(self._follow_tenancy()),
        ]
        try:
            while (line := await self.out.get()) is not None:
                await resp.write(line)
        finally:
            forget()
            self.reads.metrics.open_watches.labels("tenant", "true").dec()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        with contextlib.suppress(ConnectionError, RuntimeError):
            await resp.write_eof()
        return resp

    def _end(self, error: dict[str, Any] | None = None) -> None:
        """End the client's stream, after an ERROR event when there is one to give.

        Room is made for both the error and the end marker: a slow client loses queued
        events, never the error and never the end (else its handler would wait forever).
        """
        needed = 2 if error is not None else 1
        while self.out.maxsize - self.out.qsize() < needed and not self.out.empty():
            self.out.get_nowait()
        if error is not None:
            self.out.put_nowait(orjson.dumps({"type": "ERROR", "object": error}) + b"\n")
        self.out.put_nowait(None)

    async def _read_upstream(self, upstream: aiohttp.ClientResponse) -> None:
        framer = LineFramer(self.reads._max_event)
        try:
            async for chunk in upstream.content.iter_any():
                for line in framer.feed(chunk):
                    self._judge(orjson.loads(line))
            last = framer.finish()
            if last is not None:
                self._judge(orjson.loads(last))
        except _TooSlow:
            self._end(_status_event(429, "TooManyRequests", "the watch client is too slow"))
            return
        except LineTooLong as exc:
            self._end(_status_event(500, "InternalError", str(exc)))
            return
        except (orjson.JSONDecodeError, aiohttp.ClientError):
            pass  # the API server's stream broke: end ours cleanly, the client re-watches
        self._end()

    def _judge(self, event: dict[str, Any]) -> None:
        """Feed one upstream event, judged by tenancy as of this very event."""
        if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
            for obj in _objects_of(event):
                self.reads.index.observe(self.gr, str(event["type"]), obj)
        self._sync_view()
        self._emit(self.filter.feed(event))

    def _sync_view(self) -> bool:
        """Adopt the caller's current view if tenancy moved on; whether it did."""
        index = self.reads.index
        if self.generation == index.generation:
            return False
        self.generation = index.generation
        self._emit(self.filter.retarget(self._keep(index.view_for(self.identity))))
        return True

    async def _follow_tenancy(self) -> None:
        index = self.reads.index
        try:
            await self._follow(index)
        except _TooSlow:
            self._end(_status_event(429, "TooManyRequests", "the watch client is too slow"))
        except (UpstreamError, aiohttp.ClientError, orjson.JSONDecodeError, TimeoutError) as exc:
            # A watch that can no longer follow tenancy must not go on silently: end it with
            # an error, so the client re-lists and re-watches.
            log.warning("watch ended: following a tenancy change failed: %s", exc)
            self._end(_status_event(500, "InternalError", "tenancy change could not be applied"))

    async def _follow(self, index: TenancyIndex) -> None:
        # Its own generation: the stream side may adopt a new view first (_sync_view), and the
        # newly owned objects must be read all the same.
        followed = self.generation
        while True:
            followed = await index.wait_change(followed)
            self.generation = index.generation
            view = index.view_for(self.identity)
            # retarget opens a fetch window: objects newly owned that this stream never
            # carried are read, unless the stream brings a newer state meanwhile.
            self._emit(self.filter.retarget(self._keep(view)))
            if view is not None:
                await self._add_unseen(view)
            self.filter.end_fetches()

    async def _add_unseen(self, view: TenantView) -> None:
        """Objects now owned that the client does not have: read them, send ADDED.

        Each is read as a list narrowed to its name and to the client's own label and field
        selectors, so the API server decides whether this watch would carry it at all.
        """
        have = {name for _, name in self.filter.visible_keys()}
        collection = self.info.path.replace("/watch/", "/", 1).rstrip("/")
        query = self.info.query
        for name in sorted(self.reads.index.owned(self.gr, view).keys() - have):
            fields = ",".join(f for f in (query.field_selector, f"metadata.name={name}") if f)
            changes: dict[str, str | None] = {
                "fieldSelector": fields,
                "labelSelector": query.label_selector,
                "includeObject": self.shape.include_object,
            }
            narrowed = query.with_params(changes)
            single = only_params(narrowed, ("fieldSelector", "labelSelector", "includeObject"))
            obj = await self.reads.read_shared(
                collection, single, list_accept(self.shape.accept), self.generation
            )
            if obj is not None:
                self._emit(self.filter.add_fetched(obj))


def list_accept(accept: str) -> str:
    """The Accept of a list read standing in for a single-object read: a watch's
    `as=PartialObjectMetadata` becomes `as=PartialObjectMetadataList` (406 otherwise). Pure."""
    ranges = []
    for media in _media_ranges(accept):
        params = [p.strip() for p in media.split(";")]
        ranges.append(
            ";".join(
                "as=PartialObjectMetadataList" if p.lower() == "as=partialobjectmetadata" else p
                for p in params
            )
        )
    return ",".join(ranges)


def only_params(raw_query: str, keep: tuple[str, ...]) -> str:
    """The chunks of `raw_query` whose (undecoded) key is one of `keep`. Pure."""
    return "&".join(c for c in raw_query.split("&") if c.split("=", 1)[0] in keep)


def single_object(doc: object) -> dict[str, Any] | None:
    """The one object of a list answer, as a watch event carries it (a one-row Table stays a
    Table; list items get the kind and apiVersion a watch event has). None for no match. Pure."""
    if not isinstance(doc, dict):
        return None
    if doc.get("kind") == "Table":
        rows = doc.get("rows") or []
        return doc if len(rows) == 1 else None
    items = doc.get("items") or []
    if len(items) != 1 or not isinstance(items[0], dict):
        return None
    kind = str(doc.get("kind", ""))
    item: dict[str, Any] = dict(items[0])
    item.setdefault("kind", kind[: -len("List")] if kind.endswith("List") else kind)
    item.setdefault("apiVersion", doc.get("apiVersion"))
    return item


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Decoding a large list builds hundreds of thousands of objects, and Python's cyclic GC
    would run full collections all through it (half the time of a 20,000-PV list). Nothing else
    runs during this synchronous step, and what it builds holds no cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _objects_of(event: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The objects an event carries: itself, or each Table row's object."""
    obj = event.get("object")
    if not isinstance(obj, Mapping):
        return []
    if obj.get("kind") != "Table":
        return [obj]
    rows = obj.get("rows")
    if not isinstance(rows, list):
        return []
    return [
        r["object"] for r in rows if isinstance(r, Mapping) and isinstance(r.get("object"), Mapping)
    ]


class _TooSlow(Exception):
    """The client does not read fast enough: its buffer is full."""


def _status_event(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _not_found(gr: GroupResource, name: str) -> status.ApiError:
    return status.not_found(gr.resource, name, gr.group)


def _json_response(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")
