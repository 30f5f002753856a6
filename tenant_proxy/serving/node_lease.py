"""Execute a ReadNodeLease plan: `kubectl describe node` reads the node's Lease in
kube-node-lease, where tenants have no RBAC; for a node the caller owns, the proxy reads it."""

from __future__ import annotations

from aiohttp import web

from tenant_proxy.filtering.shape import only_params
from tenant_proxy.requestinfo import RequestInfo
from tenant_proxy.serving import passthrough
from tenant_proxy.upstream import Upstream


class NodeLeases:
    """Reads owned nodes' Leases with the proxy's own credentials."""

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream

    async def serve(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        """The Lease, relayed as the API server answered it. Only the client's Accept and
        resourceVersion go along: nothing else may shape the proxy's read."""
        headers = passthrough.read_headers(request)
        query = only_params(info.query.raw, ("resourceVersion",))
        url = self._upstream.url(info.path, query)
        upstream = await self._upstream.send("GET", url, headers)
        async with upstream:
            return await passthrough.relay(request, upstream)
