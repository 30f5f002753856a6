"""Execute a Filter plan: get, list and watch of a resource a tenancy rule governs.

The proxy reads with its own credentials (tenants rarely have cluster-wide RBAC) and answers the
caller's share only: from the watch cache where it can (`list_from_cache`, `watch_from_cache`),
else read upstream (`filtered_get`, `filtered_list`).
"""

from __future__ import annotations

from aiohttp import web

from tenant_proxy import status
from tenant_proxy.filtering.shape import shape_for
from tenant_proxy.identity import Identity
from tenant_proxy.informers.index import TenancyIndex
from tenant_proxy.kube.resources import GroupResource
from tenant_proxy.requestinfo import RequestInfo
from tenant_proxy.serving.filtered_get import FilteredGet
from tenant_proxy.serving.filtered_list import FilteredList
from tenant_proxy.serving.filtered_watch import FilteredWatch
from tenant_proxy.serving.list_from_cache import CachedLists
from tenant_proxy.tenancy.model import TenantView


class FilteredReads:
    """Filter plans, each read served by the executor of its verb.

    `cached`: lists and gets answered from the watch cache first (None: `lists_from_cache`
    is off, and they are all read upstream)."""

    def __init__(
        self,
        tenancy: TenancyIndex,
        sync_timeout: float,
        get: FilteredGet,
        listing: FilteredList,
        watch: FilteredWatch,
        cached: CachedLists | None,
    ) -> None:
        self._tenancy, self._sync_timeout = tenancy, sync_timeout
        self._get, self._list, self._watch, self._cached = get, listing, watch, cached

    async def serve(
        self,
        request: web.Request,
        info: RequestInfo,
        gr: GroupResource,
        view: TenantView,
        identity: Identity,
    ) -> tuple[web.StreamResponse, int]:
        """The response and how many objects were withheld."""
        if not await self._tenancy.wait_synced(self._sync_timeout, gr):
            raise self._tenancy.not_synced_error(gr)
        if info.verb == "watch":
            return await self._watch.serve(request, info, gr, identity), 0
        if self._cached is not None:
            # The cache holds whole objects: any form can be made of them.
            whole = shape_for(request.headers.get("Accept"), info, full_object=True)
            if info.verb == "get":
                got = await self._cached.serve_get(request, info, gr, whole, identity)
                if got is not None:
                    return got, 0
            else:
                cached = await self._cached.serve(request, info, gr, whole, identity)
                if cached is not None:
                    return cached
            # Tenancy may have moved on while the cache was waited for: read with today's.
            fresh = self._tenancy.view_for(identity)
            if fresh is None:
                # No longer in any tenant: the cluster's RBAC decides now, on a retry.
                raise status.service_unavailable("the caller's tenancy changed", retry_after=1)
            view = fresh
        shape = shape_for(request.headers.get("Accept"), info, view.needs_full_object(gr))
        if info.verb == "get":
            return await self._get.serve(request, info, gr, shape, view.owns(gr)), 0
        return await self._list.serve(request, info, gr, shape, view, identity)
