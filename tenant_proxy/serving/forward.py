"""Execute a PassThrough plan: the request goes on as the caller, and the cluster's RBAC decides.

Streamed both ways; upgrades (exec, port-forward, attach) are spliced; a watch counts as open
and ends cleanly on a drain.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from aiohttp import web

from tenant_proxy import status
from tenant_proxy.observability.metrics import Metrics
from tenant_proxy.serving import passthrough
from tenant_proxy.serving.caller import Call, caller_headers
from tenant_proxy.streams import OpenStreams
from tenant_proxy.upstream import Upstream, UpstreamError


@dataclass
class Sent:
    """A request sent upstream as the caller, its answer's head come."""

    upstream: aiohttp.ClientResponse
    headers: list[tuple[str, str]]  # as sent (the caller's, impersonated)
    is_upgrade: bool


class Forward:
    """Passes requests through as their caller on one listener."""

    def __init__(
        self,
        upstream: Upstream,
        streams: OpenStreams,
        metrics: Metrics,
        listener: str,
        max_body_bytes: int,
    ) -> None:
        self._upstream, self._streams, self._metrics = upstream, streams, metrics
        self._listener, self._max_body = listener, max_body_bytes

    async def serve(self, request: web.Request, call: Call) -> web.StreamResponse:
        return await self.answer(request, call, await self.send(request, call))

    async def send(self, request: web.Request, call: Call) -> Sent:
        """Send the request on as the caller, its body streamed (413 past the limit)."""
        is_upgrade = "upgrade" in request.headers.get("Connection", "").lower()
        headers = caller_headers(request, call.identity, is_upgrade)
        passthrough.check_declared_length(request, self._max_body)
        body = None
        if request.body_exists and not is_upgrade:
            body = passthrough.RequestBody(request, self._max_body)
        url = self._upstream.url(call.info.path, call.info.query.raw)
        try:
            upstream = await self._upstream.send(request.method, url, headers, body)
        except (UpstreamError, aiohttp.ClientError):
            if body is not None and body.overflowed:
                raise status.too_large(self._max_body) from None
            raise
        return Sent(upstream, headers, is_upgrade)

    async def answer(self, request: web.Request, call: Call, sent: Sent) -> web.StreamResponse:
        """Relay the API server's answer: spliced if upgraded, streamed otherwise."""
        upstream, is_upgrade = sent.upstream, sent.is_upgrade
        if is_upgrade and upstream.status == 101:
            return await passthrough.splice_upgrade(request, upstream)
        async with upstream:
            if is_upgrade:
                # Refused upgrade: relay the answer, then never reuse this connection.
                return await passthrough.relay(request, upstream, close=True)
            if call.info.verb != "watch":
                return await passthrough.relay(request, upstream)
            forget = self._streams.add(upstream.close)
            open_watches = self._metrics.open_watches.labels(self._listener, "false")
            open_watches.inc()
            try:
                return await passthrough.relay(request, upstream, lambda: self._streams.draining)
            finally:
                open_watches.dec()
                forget()
