"""The watch of a filtered resource: served from the watch cache (`watch_from_cache`), which
follows tenancy; never pushed down (a fixed upstream selector could not add or remove objects
when tenancy changes)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from tenant_proxy import status
from tenant_proxy.filtering.shape import Shape, watch_shape
from tenant_proxy.identity import Identity
from tenant_proxy.kube.resources import GroupResource
from tenant_proxy.requestinfo import RequestInfo
from tenant_proxy.serving import passthrough
from tenant_proxy.serving.watch_from_cache import CachedWatches
from tenant_proxy.upstream import Upstream
from tenant_proxy.watchcache.cache import WatchCaches


class FilteredWatch:
    """Watches of filtered resources, from the watch cache of each."""

    def __init__(
        self,
        upstream: Upstream,
        caches: WatchCaches,
        indexed: Callable[[], frozenset[GroupResource]],
        watches: CachedWatches,
    ) -> None:
        self._upstream, self._caches, self._indexed = upstream, caches, indexed
        self._watches = watches

    async def serve(
        self, request: web.Request, info: RequestInfo, gr: GroupResource, identity: Identity
    ) -> web.StreamResponse:
        # Served from the watch cache, which holds whole objects: any form can be made of them.
        shape = watch_shape(request.headers.get("Accept"), info)
        cache = self._caches.get(gr)
        if (cache is None and gr not in self._indexed()) or (
            cache is not None and not cache.serves(info.api_version)
        ):
            # Filtered but never informed on (metrics-server's NodeMetrics cannot be watched),
            # or at a version the cache does not hold: the API server's refusal is the answer;
            # a stream the proxy cannot judge is not.
            return await self._unwatchable(request, info, shape)
        return await self._watches.serve(request, info, gr, shape, identity)

    async def _unwatchable(
        self, request: web.Request, info: RequestInfo, shape: Shape
    ) -> web.StreamResponse:
        url = self._upstream.url(info.path, info.query.raw)
        resp = await self._upstream.send(
            "GET", url, passthrough.read_headers(request, shape.accept)
        )
        async with resp:
            if resp.status != 200:
                return await passthrough.relay(request, resp)
        raise status.method_not_allowed()
