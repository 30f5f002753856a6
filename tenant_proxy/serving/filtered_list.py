"""The list of a filtered resource read upstream as the proxy: pushed down to the API server
when the rule is a label selector, else paged through `filtering.pager` and rewritten."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from tenant_proxy import status
from tenant_proxy.filtering import continuation
from tenant_proxy.filtering.lists import NotAList, filter_response
from tenant_proxy.filtering.objects import object_key
from tenant_proxy.filtering.pager import Answer, ListPager, Read, continue_expired, list_binding
from tenant_proxy.filtering.pages import continue_in_head, upstream_continue
from tenant_proxy.filtering.shape import Shape
from tenant_proxy.identity import Identity
from tenant_proxy.kube.labels import SelectorError
from tenant_proxy.kube.resources import GroupResource
from tenant_proxy.requestinfo import RequestInfo
from tenant_proxy.requestinfo import parse_query as classify_query
from tenant_proxy.serving import passthrough
from tenant_proxy.serving.bodies import (
    BodyLimits,
    answer,
    collector_paused,
    read_bounded,
    split_page,
    upstream_query,
)
from tenant_proxy.tenancy import pushdown
from tenant_proxy.tenancy.model import TenantView
from tenant_proxy.tenancy.ownership import Owns
from tenant_proxy.upstream import Upstream

# A selector no object matches: the tenant's empty list, with the server's own envelope.
_MATCHES_NOTHING = "tenant-proxy.io/none,!tenant-proxy.io/none"

Owned = Callable[[GroupResource, TenantView], Mapping[str, object]]
"""The objects of a resource the view owns now, by name (the tenancy index's)."""


def _name(obj: Mapping[str, object]) -> str | None:
    key = object_key(obj)
    return None if key is None else key[1]


def reads_the_past(info: RequestInfo) -> bool:
    """Whether a list asks for a state the API server keeps from before, rather than its
    current one: a following page (any continue token) or an Exact resourceVersion."""
    return bool(info.query.continue_token) or info.query.exact_version


class FilteredList:
    """Lists of filtered resources, read upstream. Each rewritten list holds an upstream page
    or two and the tenant's share of the list: at most `parallel` are read at once."""

    def __init__(
        self,
        upstream: Upstream,
        limits: BodyLimits,
        tokens: continuation.ContinueTokens,
        owned: Owned,
        *,
        page_size: int,
        parallel: int,
    ) -> None:
        self._upstream, self._limits, self._tokens = upstream, limits, tokens
        self._owned = owned
        self._page_size = page_size
        self._reads = asyncio.Semaphore(parallel)

    async def serve(
        self,
        request: web.Request,
        info: RequestInfo,
        gr: GroupResource,
        shape: Shape,
        view: TenantView,
        identity: Identity,
    ) -> tuple[web.StreamResponse, int]:
        """The response and how many objects were withheld."""
        try:
            decision = pushdown.plan_read(view, gr, info.query.label_selector)
        except SelectorError as exc:
            raise status.bad_request(str(exc)) from None
        if isinstance(decision, pushdown.Nothing):
            # Upstream is asked for a list matching nothing, so kind, apiVersion,
            # resourceVersion and Table columns are the server's own, and the answer is shaped
            # as any other (a PartialObjectMetadataList asked as whole objects stays one).
            query = upstream_query(info.query, shape, _MATCHES_NOTHING)
        else:
            selector = decision.label_selector if isinstance(decision, pushdown.PushDown) else None
            query = upstream_query(info.query, shape, selector)
            if selector is not None and not (shape.partial or shape.strip_objects or shape.yaml):
                # The API server applies the rule itself: its answer is already the tenant's,
                # and so are the objects its continue tokens name.
                url = self._upstream.url(info.path, query)
                headers = passthrough.read_headers(request, shape.accept)
                resp = await self._upstream.send("GET", url, headers)
                async with resp:
                    if not reads_the_past(info) or resp.status != 200:
                        return await passthrough.relay(request, resp), 0
                    body = await read_bounded(resp, self._limits)
                # A state the API server keeps from before (a continue token, which a client
                # can write itself, or an Exact version) is judged by the labels of then: what
                # the caller may no longer see stays hidden, as lists from the cache do.
                now = self._owned(gr, view)
                try:
                    kept, withheld = filter_response(body, lambda obj: _name(obj) in now)
                except NotAList as exc:
                    raise status.bad_gateway(f"unexpected list answer: {exc}") from None
                return answer(kept, shape), withheld
        async with self._reads:
            return await self._rewritten(request, info, shape, view.owns(gr), query, identity)

    async def _rewritten(
        self,
        request: web.Request,
        info: RequestInfo,
        shape: Shape,
        owns: Owns,
        query: str,
        identity: Identity,
    ) -> tuple[web.StreamResponse, int]:
        """The tenant's page of a list read upstream page by page with the proxy's credentials.

        At most two upstream pages are held at a time (the one judged and the one read ahead,
        asked for before the current one is judged) plus the tenant's share (bounded by
        `limits.max_filtered_list_bytes`), and the client's `limit` is honoured with the
        proxy's own continue tokens, also when the upstream answer came whole (a list the API
        server served from its watch cache): a client asking `limit=1` must never get
        everything at once.
        """
        base = classify_query(query)
        bound_to = list_binding(identity.user, identity.groups, info.path, base, shape)
        want = info.query.limit if info.query.limit and info.query.limit > 0 else None
        pager = ListPager(
            base,
            owns,
            shape,
            self._position(info.query.continue_token, bound_to),
            self._page_size,
            want,
            self._limits.max_bytes,
        )
        headers = passthrough.read_headers(request, shape.accept)
        ahead = _ReadAhead(functools.partial(self._read_page, pager, info.path, headers))
        try:
            body = await self._first_page(request, info.path, headers, pager, ahead)
            if isinstance(body, web.StreamResponse):
                return body, 0
            while True:  # each page is dropped once judged: at most two are held
                following = upstream_continue(body)
                ahead.keep_only(following)  # a head misread: never used
                if pager.reads_ahead and following is not None:
                    ahead.start(pager.read_of(following))
                page = await split_page(body, owns)
                del body
                with collector_paused():
                    step = pager.feed(page, following)
                if isinstance(step, Answer):
                    break
                body = await ahead.take(step)
        finally:
            ahead.cancel()
        token = self._tokens.issue(step.resume, bound_to) if step.resume is not None else None
        return answer(step.body(token), shape), step.withheld

    async def _first_page(
        self,
        request: web.Request,
        path: str,
        headers: list[tuple[str, str]],
        pager: ListPager,
        ahead: _ReadAhead,
    ) -> bytes | web.StreamResponse:
        """The first page the pager asks for, or the API server's refusal of it, relayed."""
        read = pager.start()
        resp = await self._upstream.send("GET", self._upstream.url(path, read.query), headers)
        async with resp:
            if resp.status != 200:
                refusal = pager.refused(read, resp.status)
                if refusal is not None:
                    raise refusal
                return await passthrough.relay(request, resp)

            def on_head(head: bytes) -> None:
                # Page 2 is asked for as soon as page 1's first bytes name it.
                if pager.reads_ahead and (following := continue_in_head(head)) is not None:
                    ahead.start(pager.read_of(following))

            return await read_bounded(resp, self._limits, on_head)

    def _position(self, token: str | None, bound_to: bytes) -> continuation.Position | None:
        if not token:
            return None
        try:
            return self._tokens.read(token, bound_to)
        except continuation.TokenExpired:
            raise continue_expired() from None
        except continuation.TokenInvalid as exc:
            raise status.bad_request(f"continue key is not valid: {exc}") from None

    async def _read_page(
        self, pager: ListPager, path: str, headers: list[tuple[str, str]], read: Read
    ) -> bytes:
        """A following page of a list; its refusals are the pager's to word."""
        resp = await self._upstream.send("GET", self._upstream.url(path, read.query), headers)
        async with resp:
            if resp.status != 200:
                refusal = pager.refused(read, resp.status)
                assert refusal is not None  # a following page's refusal is never relayed
                raise refusal
            return await read_bounded(resp, self._limits)


class _ReadAhead:
    """Following pages asked for before they are needed (the API server produces one while
    the proxy judges the one before), by the continue token that names them."""

    def __init__(self, fetch: Callable[[Read], Awaitable[bytes]]) -> None:
        self._fetch = fetch
        self._pending: dict[str | None, asyncio.Future[bytes]] = {}

    def start(self, read: Read) -> None:
        if read.following not in self._pending:
            self._pending[read.following] = asyncio.ensure_future(self._fetch(read))

    def keep_only(self, following: str | None) -> None:
        for stale in self._pending.keys() - {following}:
            _cancel(self._pending.pop(stale))

    async def take(self, read: Read) -> bytes:
        self.start(read)
        return await self._pending.pop(read.following)

    def cancel(self) -> None:
        for task in self._pending.values():
            _cancel(task)


def _cancel(task: asyncio.Future[bytes]) -> None:
    task.cancel()
    # A cancelled read's outcome is never wanted; fetching it keeps asyncio quiet.
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
