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
import os
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from tenant_proxy import passthrough, status
from tenant_proxy.filtering import continuation, pushdown
from tenant_proxy.filtering.forms import partial_metadata
from tenant_proxy.filtering.lists import NotAList, filter_response
from tenant_proxy.filtering.pages import (
    Page,
    Splitting,
    assemble,
    continue_in_head,
    resume_position,
    take,
    upstream_continue,
)
from tenant_proxy.filtering.selectors import SelectorError
from tenant_proxy.filtering.shape import Shape, shape_for, watch_shape
from tenant_proxy.identity import Identity
from tenant_proxy.list_from_cache import CachedLists
from tenant_proxy.observability.metrics import Metrics
from tenant_proxy.requestinfo import Query, RequestInfo
from tenant_proxy.requestinfo import parse_query as classify_query
from tenant_proxy.streams import OpenStreams
from tenant_proxy.tenancy.index import TenancyIndex
from tenant_proxy.tenancy.model import GroupResource, Judge, TenantView
from tenant_proxy.upstream import Upstream
from tenant_proxy.watch_from_cache import CachedWatches
from tenant_proxy.watchcache.rows import RowBook

log = logging.getLogger("tenant_proxy.filtered")

# An API server writes a list's metadata (and its continue token) before the items.
_HEAD_BYTES = 4096
# A selector no object matches: the tenant's empty list, with the server's own envelope.
_MATCHES_NOTHING = "tenant-proxy.io/none,!tenant-proxy.io/none"
# Entries judged between two turns of the event loop (a few milliseconds' work).
_SPLIT_SLICE = 1000


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
        bookmark_seconds: float = 30.0,
        slow_client_seconds: float = 10.0,
        lists_from_cache: bool = True,
        list_freshness_seconds: float = 0.25,
        streams: OpenStreams | None = None,
        list_reads: int = 8,
        list_page: int = 5000,
        tokens: continuation.ContinueTokens | None = None,
        body_timeout: float = 60.0,
    ) -> None:
        self.index, self.upstream, self.metrics = index, upstream, metrics
        self.streams = streams if streams is not None else OpenStreams()
        # Each rewritten list holds an upstream page or two and the tenant's share of the
        # list: bound how many at once.
        self._list_reads = asyncio.Semaphore(list_reads)
        self._list_page = list_page
        self._body_timeout = body_timeout
        self._tokens = tokens if tokens is not None else continuation.ContinueTokens(os.urandom(32))
        self._sync_timeout = sync_timeout
        self.max_event_bytes = max_event_bytes
        self._max_list = max_list_bytes
        self.watch_buffer_events = watch_buffer_events
        rows = RowBook(upstream)
        self._cached_lists = (
            CachedLists(
                index.caches,
                index,
                upstream,
                self._tokens,
                rows,
                fresh_wait=list_freshness_seconds,
            )
            if lists_from_cache
            else None
        )
        self._watches = CachedWatches(
            index.caches,
            rows,
            metrics,
            self.streams,
            bookmark_seconds=bookmark_seconds,
            buffer_events=watch_buffer_events,
            slow_seconds=slow_client_seconds,
        )

    async def serve(
        self,
        request: web.Request,
        info: RequestInfo,
        gr: GroupResource,
        view: TenantView,
        identity: Identity,
    ) -> tuple[web.StreamResponse, int]:
        """The response and how many objects were withheld."""
        if not await self.index.wait_synced(self._sync_timeout, gr):
            raise self.index.not_synced_error(gr)
        if info.verb == "watch":
            return await self._watch(request, info, gr, identity)
        if self._cached_lists is not None:
            # The cache holds whole objects: any form can be made of them.
            whole = shape_for(request.headers.get("Accept"), info, full_object=True)
            if info.verb == "get":
                got = await self._cached_lists.serve_get(request, info, gr, whole, identity)
                if got is not None:
                    return got, 0
            else:
                cached = await self._cached_lists.serve(request, info, gr, whole, identity)
                if cached is not None:
                    return cached
            # Tenancy may have moved on while the cache was waited for: read with today's.
            fresh = self.index.view_for(identity)
            if fresh is None:
                # No longer in any tenant: the cluster's RBAC decides now, on a retry.
                raise status.service_unavailable("the caller's tenancy changed", retry_after=1)
            view = fresh
        shape = shape_for(request.headers.get("Accept"), info, view.needs_full_object(gr))
        keep = view.judge(gr)
        if info.verb == "get":
            return await self._get(request, info, gr, shape, keep)
        return await self._list(request, info, gr, shape, view, keep, identity)

    # -- requests as the proxy ----------------------------------------------------------------
    def _headers(self, request: web.Request, shape: Shape) -> list[tuple[str, str]]:
        return passthrough.read_headers(request, shape.accept)

    def _query(self, info: RequestInfo, shape: Shape, selector: str | None) -> str:
        changes: dict[str, str | None] = {}
        if selector is not None:
            changes["labelSelector"] = selector
        if shape.include_object is not None:
            changes["includeObject"] = shape.include_object
        return info.query.with_params(changes) if changes else info.query.raw

    async def _read_body(
        self, resp: aiohttp.ClientResponse, on_head: Callable[[bytes], None] | None = None
    ) -> bytes:
        """The whole body, bounded in size and time; `on_head` sees its first few KiB as soon
        as they came. A body that breaks off or stalls is the API server's failure (502/504),
        answered as a Status, never half a list."""
        if resp.content_length is not None and resp.content_length > self._max_list:
            raise status.bad_gateway("the API server's answer is larger than the proxy reads")
        # Chunks as they arrive, joined once: a growing buffer would copy a large list twice.
        chunks, size = [], 0
        try:
            async with asyncio.timeout(self._body_timeout):
                async for chunk in resp.content.iter_any():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > self._max_list:
                        raise status.bad_gateway(
                            "the API server's answer is larger than the proxy reads"
                        )
                    if on_head is not None and (size >= _HEAD_BYTES or resp.content.at_eof()):
                        on_head(b"".join(chunks)[:_HEAD_BYTES])
                        on_head = None
        except TimeoutError:
            raise status.gateway_timeout("the API server's answer did not arrive in time") from None
        except aiohttp.ClientError as exc:
            raise status.bad_gateway(f"the API server's answer broke off: {exc}") from None
        if on_head is not None:
            on_head(b"".join(chunks))
        return b"".join(chunks)

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
            return _answer(filtered, shape), 0
        if not keep(doc):
            # Exactly the API server's answer for a missing object: existence never leaks.
            raise _not_found(gr, info.name)
        if shape.partial and doc.get("kind") != "PartialObjectMetadata":
            doc = partial_metadata(doc)
            body = orjson.dumps(doc)
        return _answer(body, shape), 0

    # -- list ---------------------------------------------------------------------------------
    async def _list(
        self,
        request: web.Request,
        info: RequestInfo,
        gr: GroupResource,
        shape: Shape,
        view: TenantView,
        keep: Judge,
        identity: Identity,
    ) -> tuple[web.StreamResponse, int]:
        try:
            decision = pushdown.plan_read(view, gr, info.query.label_selector)
        except SelectorError as exc:
            raise status.bad_request(str(exc)) from None
        if isinstance(decision, pushdown.Nothing):
            # Upstream is asked for a list matching nothing, so kind, apiVersion,
            # resourceVersion and Table columns are the server's own, and the answer is shaped
            # as any other (a PartialObjectMetadataList asked as whole objects stays one).
            query = self._query(info, shape, _MATCHES_NOTHING)
        else:
            selector = decision.label_selector if isinstance(decision, pushdown.PushDown) else None
            query = self._query(info, shape, selector)
            if selector is not None and not (shape.partial or shape.strip_objects or shape.yaml):
                # The API server applies the rule itself: its answer is already the tenant's,
                # and so are the objects its continue tokens name.
                url = self.upstream.url(info.path, query)
                resp = await self.upstream.send("GET", url, self._headers(request, shape))
                async with resp:
                    return await passthrough.relay(request, resp), 0
        async with self._list_reads:
            return await self._rewritten_list(request, info, shape, keep, query, identity)

    async def _rewritten_list(
        self,
        request: web.Request,
        info: RequestInfo,
        shape: Shape,
        keep: Judge,
        query: str,
        identity: Identity,
    ) -> tuple[web.StreamResponse, int]:
        """The tenant's page of a list read upstream page by page with the proxy's credentials.

        At most two upstream pages are held at a time (the one judged and the one read ahead,
        asked for before the current one is judged) plus the tenant's share (bounded by
        `limits.max_filtered_list_bytes`), and the client's `limit` is honoured
        with the proxy's own continue tokens (`filtering.continuation`), also when the
        upstream answer came whole (a list the API server served from its watch cache): a
        client asking `limit=1` must never get everything at once.
        """
        base = classify_query(query)
        # A token continues this caller's list with these selectors and shape, nothing else.
        bound_to = continuation.binding(
            identity.user,
            *identity.groups,
            info.path,
            base.label_selector or "",
            base.field_selector or "",
            shape.accept,
            base.include_object or "",
        )
        position = self._position(info, bound_to)
        page_size = position.page if position is not None else self._list_page
        if position is None:
            first_query = _page_query(base, page_size)
        elif position.upstream:
            first_query = _page_query(base, page_size, following=position.upstream)
        else:  # inside the first upstream page: read that very snapshot again
            first_query = _page_query(base, page_size, snapshot=position.resource_version)
        headers = self._headers(request, shape)
        want = info.query.limit if info.query.limit and info.query.limit > 0 else None
        # One page is read ahead, so the API server produces it while the proxy judges the
        # one before: page 2 as soon as page 1's first bytes name it, each later one when
        # judging of the one before starts. Not for a limited read's first page, which may
        # well be enough (reading ahead would then be the API server's wasted work).
        eager = want is None
        ahead: dict[str, asyncio.Future[bytes]] = {}

        def read_ahead(following: str) -> None:
            if following not in ahead:
                nxt = _page_query(base, page_size, following=following)
                ahead[following] = asyncio.ensure_future(self._read_page(info.path, nxt, headers))

        def on_head(head: bytes) -> None:
            if eager and (following := continue_in_head(head)) is not None:
                read_ahead(following)

        url = self.upstream.url(info.path, first_query)
        resp = await self.upstream.send("GET", url, headers)
        async with resp:
            if resp.status != 200:
                if position is not None and resp.status == 410:
                    raise _continue_expired()
                return await passthrough.relay(request, resp), 0
            body = await self._read_body(resp, on_head)
        following = upstream_continue(body)
        fetched_with = position.upstream if position is not None else ""
        skip = position.skip if position is not None else 0
        first: Page | None = None
        entries: list[dict[str, Any]] = []
        withheld, resume, held = 0, None, 0
        try:
            while True:
                for stale in ahead.keys() - {following}:
                    _cancel(ahead.pop(stale))  # a head misread: never used
                if eager and following is not None:
                    read_ahead(following)
                page = await self._split(body, keep)
                del body
                first = first or page
                with _collector_paused():
                    taken = take(
                        page,
                        keep,
                        skip=skip,
                        want=None if want is None else want - len(entries),
                        strip_objects=shape.strip_objects,
                        metadata_only=shape.partial,
                    )
                eager = True
                held += sum(len(raw) for _, raw in page.candidates)
                if held > self._max_list:
                    # Bounded like an upstream page: a share this large must be asked in pages.
                    raise status.internal_error(
                        "the list is larger than the proxy answers at once; ask for it in "
                        "pages (limit)"
                    )
                entries += taken.entries
                withheld += taken.judged - len(taken.entries)
                resume = resume_position(
                    page,
                    taken,
                    fetched_with=fetched_with,
                    following=following,
                    limit_reached=want is not None and len(entries) >= want,
                    snapshot=first.resource_version,
                    page_size=page_size,
                )
                if resume is not None or following is None:
                    break
                read_ahead(following)
                body = await ahead.pop(following)
                fetched_with, skip = following, 0
                following = upstream_continue(body)
        finally:
            for task in ahead.values():
                _cancel(task)
        token = self._tokens.issue(resume, bound_to) if resume is not None else None
        answer = assemble(first, entries, metadata_only=shape.partial, continue_token=token)
        return _answer(answer, shape), withheld

    async def _split(self, body: bytes, keep: Judge) -> Page:
        """The page split, a slice at a time: between slices the event loop reads the page
        ahead and serves other clients (a large page is tens of milliseconds of work)."""
        try:
            with _collector_paused():
                splitting = Splitting(body, keep, keep.fields)
            while not _split_some(splitting):  # noqa: ASYNC110 - yielding, not waiting
                await asyncio.sleep(0)
        except NotAList as exc:
            raise status.bad_gateway(f"unexpected list answer: {exc}") from None
        return splitting.page

    def _position(self, info: RequestInfo, bound_to: bytes) -> continuation.Position | None:
        token = info.query.continue_token
        if not token:
            return None
        try:
            return self._tokens.read(token, bound_to)
        except continuation.TokenExpired:
            raise _continue_expired() from None
        except continuation.TokenInvalid as exc:
            raise status.bad_request(f"continue key is not valid: {exc}") from None

    async def _read_page(self, path: str, query: str, headers: list[tuple[str, str]]) -> bytes:
        """A following page of a list; its errors are the proxy's to word (the API server's
        410 would carry a continue token naming another tenant's object)."""
        resp = await self.upstream.send("GET", self.upstream.url(path, query), headers)
        async with resp:
            if resp.status == 410:
                raise _continue_expired()
            if resp.status != 200:
                raise status.bad_gateway(
                    f"the API server failed a page of the list ({resp.status})"
                )
            return await self._read_body(resp)

    # -- watch --------------------------------------------------------------------------------
    async def _watch(
        self,
        request: web.Request,
        info: RequestInfo,
        gr: GroupResource,
        identity: Identity,
    ) -> tuple[web.StreamResponse, int]:
        # Served from the watch cache, which holds whole objects: any form can be made of them.
        shape = watch_shape(request.headers.get("Accept"), info)
        cache = self.index.caches.get(gr)
        if (cache is None and gr not in self.index.indexed()) or (
            cache is not None and not cache.serves(info.api_version)
        ):
            # Filtered but never informed on (metrics-server's NodeMetrics cannot be watched),
            # or at a version the cache does not hold: the API server's refusal is the answer;
            # a stream the proxy cannot judge is not.
            return await self._unwatchable(request, info, shape), 0
        return await self._watches.serve(request, info, gr, shape, identity), 0

    async def _unwatchable(
        self, request: web.Request, info: RequestInfo, shape: Shape
    ) -> web.StreamResponse:
        url = self.upstream.url(info.path, info.query.raw)
        resp = await self.upstream.send("GET", url, self._headers(request, shape))
        async with resp:
            if resp.status != 200:
                return await passthrough.relay(request, resp)
        raise status.method_not_allowed()


def _answer(body: bytes, shape: Shape) -> web.Response:
    return passthrough.json_response(body, as_yaml=shape.yaml)


def _split_some(splitting: Splitting) -> bool:
    with _collector_paused():
        return splitting.step(_SPLIT_SLICE)


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


def _not_found(gr: GroupResource, name: str) -> status.ApiError:
    return status.not_found(gr.resource, name, gr.group)


def _continue_expired() -> status.ApiError:
    return status.expired(
        "The provided continue parameter is too old to display a consistent list result. "
        "You can start a new list without the continue parameter."
    )


def _cancel(task: asyncio.Future[bytes] | None) -> None:
    if task is not None:
        task.cancel()
        # A cancelled read's outcome is never wanted; fetching it keeps asyncio quiet.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())


def _page_query(
    base: Query, page_size: int, *, following: str | None = None, snapshot: str | None = None
) -> str:
    """The upstream query for one page: the first (the client's own resourceVersion), a
    following one (the API server refuses a resourceVersion beside continue), or the first
    again at the snapshot a token recorded."""
    changes: dict[str, str | None] = {"limit": str(page_size), "continue": following}
    if following is not None:
        changes.update(resourceVersion=None, resourceVersionMatch=None)
    elif snapshot is not None:
        changes.update(resourceVersion=snapshot, resourceVersionMatch="Exact")
    return base.with_params(changes)
