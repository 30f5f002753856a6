"""Serving a filtered list from the watch cache, with the API server's consistency rules.

- `resourceVersion=0`: any recent state will do: the cache's, as it is.
- unset (a consistent read): the cache answers once it has caught up with the API server's
  current resourceVersion, learned by a `limit=1` list (as kube-apiserver >= 1.31 serves
  consistent reads from its watch cache); if it does not within `fresh_wait`, the read goes
  upstream as before (as the API server falls back to etcd). Where such waits keep failing (a
  quiet resource on a busy v1.24 cluster: `watchcache.patience`), reads only check, not wait.
- `resourceVersion=N` (NotOlderThan): once the cache has reached N, else upstream.
- `resourceVersion=N&resourceVersionMatch=Exact`, and every following page: the state at N from
  the cache's window, else upstream (which may answer 410).
Pages hold at most `limit` of the caller's objects, with the proxy's own sealed continue token
(bound to the caller and the query, as for rewritten lists). `None` from `serve` means: not
from the cache, use the upstream path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import NamedTuple, TypeVar

from aiohttp import web

from tenant_proxy import status
from tenant_proxy.filtering import continuation
from tenant_proxy.filtering.objects import ObjectTest, everything
from tenant_proxy.filtering.shape import Shape
from tenant_proxy.filtering.watch_requests import client_selector
from tenant_proxy.identity import Identity
from tenant_proxy.kube.resources import GroupResource
from tenant_proxy.requestinfo import RequestInfo, field_terms
from tenant_proxy.serving import passthrough
from tenant_proxy.upstream import Upstream
from tenant_proxy.watchcache.ages import age_columns, aged
from tenant_proxy.watchcache.cache import ResourceCache, WatchCaches
from tenant_proxy.watchcache.freshness import CurrentVersions
from tenant_proxy.watchcache.listing import (
    OwnedNames,
    list_bytes,
    object_body,
    page_of,
    shown,
    table_body,
    table_row,
)
from tenant_proxy.watchcache.patience import Patience
from tenant_proxy.watchcache.replay import Side, Whole, side_of, visible
from tenant_proxy.watchcache.rows import RowBook
from tenant_proxy.watchcache.stored import Stored
from tenant_proxy.watchcache.timeline import Obj, TooOld


class Found(NamedTuple):
    """A state to answer from."""

    state: Mapping[str, Obj]
    names: list[str]
    """The names to consider, in order."""
    rv: int
    seq: int
    """Its place in the timeline."""
    side: Side | None
    """The caller's side then."""
    judged: bool
    """`names` are exactly the side's objects (`OwnedNames`), else the side judges each."""


T = TypeVar("T")

# Sides (distinct rules) whose owned names are kept, per cache.
_OWNED_KEPT = 1_000
# Rows read from the API server at once for one Table answer.
_ROW_READS = 32


class CachedLists:
    """Serves filtered lists of the tenant listener from the watch cache when it may."""

    def __init__(
        self,
        caches: WatchCaches,
        upstream: Upstream,
        tokens: continuation.ContinueTokens,
        rows: RowBook,
        *,
        fresh_wait: float = 0.25,
    ) -> None:
        self._caches = caches
        self._tokens, self._rows, self._fresh_wait = tokens, rows, fresh_wait
        self.versions = CurrentVersions(upstream)
        self.patience = Patience(fresh_wait)
        # The names each side's rules own in each cache, kept in step with its timeline.
        self._owned_names: dict[tuple[GroupResource, Hashable], OwnedNames] = {}

    async def serve(
        self,
        request: web.Request,
        info: RequestInfo,
        gr: GroupResource,
        shape: Shape,
        identity: Identity,
    ) -> tuple[web.StreamResponse, int] | None:
        """The answer and how many objects it withheld, or None: not from the cache."""
        cache = self._caches.get(gr)
        if cache is None or cache.timeline is None or not cache.serves(info.api_version):
            return None
        q = info.query
        bound_to = continuation.binding(
            "cache",
            identity.user,
            *identity.groups,
            info.path,
            q.label_selector or "",
            q.field_selector or "",
            shape.accept,
            q.include_object or "",
        )
        position = self._position(q.continue_token, bound_to)
        if q.continue_token and position is None:
            return None  # not a token of this path: the upstream path reads it (or refuses)
        selected, read = _selection(info)
        limit = q.limit if q.limit and q.limit > 0 else None
        after = position.after if position is not None else ""

        async def answer(found: Found) -> tuple[web.StreamResponse, int]:
            state, names, rv, seq, side, judged = found
            # What tenancy hid from the caller (its side's owned names are all it may see).
            hidden = len(state) - len(names)
            withheld = hidden if position is None and hidden > 0 else 0
            items, last = page_of(state, names, side, selected, after, limit, read, judged=judged)
            token = None
            if last is not None:
                at = continuation.Position(
                    "", 0, str(rv), 1, after=last, seq=seq, cache=self._caches.instance
                )
                token = self._tokens.issue(at, bound_to)
            if shape.table:
                body = await self._table(cache, shape, items, rv, token)
            else:
                body = list_bytes(cache.kind, cache.api_version, items, rv, token, shape.partial)
            return passthrough.json_response(body, as_yaml=shape.yaml), withheld

        return await self._answered(cache, info, gr, identity, position, answer)

    async def serve_get(
        self,
        request: web.Request,
        info: RequestInfo,
        gr: GroupResource,
        shape: Shape,
        identity: Identity,
    ) -> web.StreamResponse | None:
        """One object by name, with a list's consistency rules; None: not from the cache.
        An object the caller may not see is exactly the API server's 404 for a missing one."""
        cache = self._caches.get(gr)
        if cache is None or cache.timeline is None or not cache.serves(info.api_version):
            return None

        async def answer(found: Found) -> web.StreamResponse:
            state, side = found.state, found.side
            obj = state.get(info.name)
            if obj is None or not visible(side, everything, obj):
                raise status.not_found(gr.resource, info.name, gr.group)
            if shape.table:
                body = await self._table(cache, shape, [obj], obj.rv, None)
            else:
                body = object_body(obj, shape.partial)
            return passthrough.json_response(body, as_yaml=shape.yaml)

        return await self._answered(cache, info, gr, identity, None, answer)

    def _position(self, token: str | None, bound_to: bytes) -> continuation.Position | None:
        if not token:
            return None
        try:
            position = self._tokens.read(token, bound_to)
        except (continuation.TokenExpired, continuation.TokenInvalid):
            # Not one of this path's: a page of a list the upstream path began (its own token,
            # or the API server's for a pushed-down selector), which that path continues.
            return None
        return position if position.after else None

    async def _answered(
        self,
        cache: ResourceCache,
        info: RequestInfo,
        gr: GroupResource,
        identity: Identity,
        position: continuation.Position | None,
        answer: Callable[[Found], Awaitable[T]],
    ) -> T | None:
        """`answer` made of the state the request may be answered from, or None: not from
        the cache.

        A consistent read needs the API server's current resourceVersion, one round trip
        upstream. Its answer is made meanwhile, of the cache as it stands: kept if the cache
        had then heard its stream up to that version (a quiet cache, the usual case), else
        made again once it has (`reach`), so it is never older than the request, and the
        round trip is the floor of its time rather than added to it.
        """
        q = info.query
        if position is not None or q.resource_version not in (None, ""):
            found = await self._state(cache, info, gr, identity, position)
            return None if found is None else await answer(found)
        timeline = cache.timeline
        assert timeline is not None
        asked = self.versions.ask(cache.path)
        await asyncio.sleep(0)  # the probe's request goes out before the answer is made
        heard = timeline.heard
        refused: status.ApiError | None = None
        try:
            made: T | None = await answer(self._now(cache, gr, identity))
        except status.ApiError as err:
            # Not yet: a 404 of the cache as it stands may be an object it has still to hear
            # of. It holds only if the cache was fresh.
            made, refused = None, err
        current = await self.versions.answer(asked)
        if current is None:
            return None
        if heard >= current:
            self.patience.caught_up(gr, True, 0.0)
            if refused is not None:
                raise refused
            return made
        wait = self.patience.wait_for(gr)
        caught = await self._caches.reach(gr, current, wait)
        self.patience.caught_up(gr, caught, wait)
        if not caught:
            return None
        return await answer(self._now(cache, gr, identity))

    async def _state(
        self,
        cache: ResourceCache,
        info: RequestInfo,
        gr: GroupResource,
        identity: Identity,
        position: continuation.Position | None,
    ) -> Found | None:
        """The state to answer a read at a version (`resourceVersion` set, or a following
        page) from, or None when the cache may not answer."""
        timeline = cache.timeline
        assert timeline is not None
        q = info.query
        if position is not None or q.exact_version:
            rv_text = position.resource_version if position else q.resource_version or ""
            if not rv_text.isdigit():
                raise status.bad_request(f"invalid resource version: {rv_text}")
            asked = int(rv_text)
            # Not heard yet: never the older state stamped `asked` (a watch from it would then
            # skip what the list lacked). Waited for, else the API server answers (its cacher
            # waits too, then says 504 "Too large resource version").
            if (
                position is None
                and asked > timeline.heard
                and not await self._caches.reach(gr, asked, self._fresh_wait)
            ):
                return None
            try:
                if position is not None and position.cache == self._caches.instance:
                    # The very point of the first page (a version may span several entries).
                    seq = position.seq
                else:
                    seq = timeline.start_after(asked)
                state = timeline.state_at(seq)
                tenancy = timeline.tenancy_at(seq)
            except TooOld:
                if position is not None:
                    raise status.expired(_CONTINUE_EXPIRED) from None
                return None
            # Judged by tenancy then and now: what a caller may no longer see stays hidden,
            # however old the version it asks for (the API server's RBAC is today's too).
            cache.settle()
            then = side_of(tenancy.view_for(identity), gr)
            now = side_of(timeline.tenancy.view_for(identity), gr)
            return Found(state, sorted(state), asked, seq, _both(then, now), False)
        if q.resource_version not in (None, "", "0"):
            rv_text = q.resource_version or ""
            if not rv_text.isdigit():
                raise status.bad_request(f"invalid resource version: {rv_text}")
            if not await self._caches.reach(gr, int(rv_text), self._fresh_wait):
                return None
        return self._now(cache, gr, identity)

    def _owned(self, gr: GroupResource, side: Side) -> OwnedNames:
        key = (gr, side.rules)
        owned = self._owned_names.get(key)
        if owned is None:
            if len(self._owned_names) >= _OWNED_KEPT:
                self._owned_names.clear()  # rules of tenancies long gone, most of them
            owned = self._owned_names[key] = OwnedNames(side.owns)
        return owned

    def _now(self, cache: ResourceCache, gr: GroupResource, identity: Identity) -> Found:
        """The cache's state as it stands."""
        timeline = cache.timeline
        assert timeline is not None
        cache.settle()  # a tenancy change not yet recorded: the answer must be a watch's start
        view_now = timeline.tenancy.view_for(identity)
        side = side_of(view_now, gr)
        names = self._owned(gr, side).names(timeline) if side is not None else []
        rv = timeline.hand_out(timeline.end)
        return Found(timeline.objects, names, rv, timeline.end, side, True)

    async def _table(
        self,
        cache: ResourceCache,
        shape: Shape,
        items: list[Obj],
        rv: int,
        token: str | None,
    ) -> bytes:
        rows_of = self._rows.rows_for(cache.gr, cache.path)
        gate = asyncio.Semaphore(_ROW_READS)

        async def read(obj: Obj) -> None:
            async with gate:
                await rows_of.cells(obj.decoded())

        # Most rows are held already: a coroutine per row would cost more than the rest.
        await asyncio.gather(*(read(o) for o in items if rows_of.held_row(o.name, o.rv) is None))
        if rows_of.columns is None and not items:
            await rows_of.columns_only()
        ages = age_columns(rows_of.columns or [])
        now = time.time()
        rows = []
        for obj in items:
            # A state the API server no longer has is shown by its name alone (`Rows.cells`).
            cells, created = rows_of.held_row(obj.name, obj.rv) or (
                rows_of.name_only(obj.name),
                None,
            )
            if shape.strip_objects:
                value = None
            elif shape.partial:
                value = rows_of.metadata(obj)
            else:
                value = shown(obj, False)
            rows.append(table_row(aged(cells, ages, created, now), value))
        return table_body(rows_of.columns or [], rows, rv, token)


def _selection(info: RequestInfo) -> tuple[ObjectTest, Callable[[Stored], Whole]]:
    """The client's own selectors, and what they read: nothing (no selector), the projection
    (names and labels), or the whole object (a field selector may read any field)."""
    q = info.query
    if not (q.label_selector or q.field_selector or info.name):
        return everything, Stored.decoded
    selected = client_selector(q.label_selector, q.field_selector, info.name)
    if field_terms(q.field_selector):
        return selected, Stored.decoded
    return selected, _projection


def _projection(obj: Stored) -> Whole:
    return obj.view


def _both(then: Side | None, now: Side | None) -> Side | None:
    if then is None or now is None:
        return None
    if then.rules == now.rules:
        return now
    return Side((then.rules, now.rules), lambda obj: then.owns(obj) and now.owns(obj))


_CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. "
    "You can start a new list without the continue parameter."
)
