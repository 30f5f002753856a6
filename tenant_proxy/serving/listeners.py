"""The listeners' aiohttp side: an app per pipeline, bound behind the edge (TLS) or plain."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web, web_urldispatcher

from tenant_proxy import status
from tenant_proxy.config import LimitSettings, ListenerSettings
from tenant_proxy.edge import EdgeLimits, EdgeSite, Listener, requests_tracked
from tenant_proxy.head_errors import StatusOnUnreadable, quote_free_server_log
from tenant_proxy.observability.metrics import Metrics
from tenant_proxy.serving.pipeline import Pipeline
from tenant_proxy.startup import listen_error

log = logging.getLogger("tenant_proxy.server")

# The setting each listener comes from, to name it when it cannot bind.
LISTENER_FIELDS = {
    "tenant": "listener.address",
    "admin": "admin.listener.address",
    "metrics": "observability.metrics.address",
}


@dataclass
class Bound:
    """A listener bound to its address."""

    runner: web.AppRunner
    site: web.BaseSite
    scheme: str

    @property
    def url(self) -> str:
        host, port = self.runner.addresses[0][:2]
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{host}:{port}"


@dataclass(frozen=True)
class Binding:
    """How every listener of the process binds."""

    limits: LimitSettings
    metrics: Metrics
    drain_seconds: float
    reuse_port: bool


def handler_args(limits: LimitSettings) -> dict[str, Any]:
    """What each connection's aiohttp request handler is made with."""
    return {
        "max_line_size": limits.max_line_bytes,
        "max_field_size": limits.max_header_bytes,
        "max_headers": limits.max_header_count,
        # Never inflate a request body (on the loop, in one go: a 10 MiB gzip bomb
        # stalled every tenant for seconds); encoded bodies are refused with 415.
        "auto_decompress": False,
        # A body the proxy refused (413, 415, 401...) is not read to its end: the
        # connection closes after the answer (Go's server reads at most 256 KiB of it),
        # so a client cannot make the proxy decrypt megabytes it will throw away.
        "lingering_time": 0,
        # The edge keeps the idle clock (and counts what it closes); aiohttp's own,
        # an hour by default, is only a backstop behind it.
        "keepalive_timeout": limits.idle_timeout_seconds + limits.header_timeout_seconds,
    }


def pipeline_app(pipeline: Pipeline, limits: LimitSettings) -> web.Application:
    """The app of a tenant or admin listener: every path to `pipeline`."""
    # Bodies are streamed by the pipeline; client_max_size bounds only what aiohttp reads.
    app = web.Application(
        client_max_size=limits.max_body_bytes,
        middlewares=[requests_tracked],
        handler_args=handler_args(limits),
    )
    app.router.add_route(
        "*", "/{tail:.*}", pipeline.handle, expect_handler=_expect_within(limits.max_body_bytes)
    )
    app.on_response_prepare.append(pipeline.on_prepare)
    return app


def _expect_within(limit: int) -> Callable[[web.Request], Awaitable[web.StreamResponse | None]]:
    """`Expect: 100-continue` answered as Go's server does in effect: a body declared over the
    limit gets its 413 at once, never a `100 Continue` inviting it (aiohttp's default sends
    100 before the handler sees the length)."""

    async def expect(request: web.Request) -> web.StreamResponse | None:
        if request.content_length is not None and request.content_length > limit:
            err = status.too_large(limit)
            response = web.Response(
                status=err.code, body=status.encode(err), content_type="application/json"
            )
            response.force_close()
            return response
        await web_urldispatcher._default_expect_handler(request)
        return None

    return expect


async def bind(
    name: str,
    app: web.Application,
    where: ListenerSettings,
    binding: Binding,
    tls: ssl.SSLContext | None,
) -> Bound:
    """Serve `app` at `where`: behind the edge with `tls`, or plain HTTP without."""
    # handler_cancellation: a client that leaves must cancel its handler (and so its
    # upstream watch); aiohttp's production runner leaves it off by default.
    runner = web.AppRunner(
        app, handler_cancellation=True, access_log=None, shutdown_timeout=binding.drain_seconds
    )
    await runner.setup()
    site: web.BaseSite
    if tls is not None:
        server = runner.server
        assert server is not None
        # Made as the runner would make them (the app's handler_args, no access log), but
        # answering a request it cannot read with a Status that quotes none of it.
        made_with = {"access_log": None, **handler_args(binding.limits)}

        def handler() -> StatusOnUnreadable:
            return StatusOnUnreadable(server, loop=asyncio.get_running_loop(), **made_with)

        edge = Listener(name, tls, edge_limits(binding.limits), binding.metrics, handler)
        site = EdgeSite(runner, where.host, where.port, edge, reuse_port=binding.reuse_port)
    else:
        quote_free_server_log()
        site = web.TCPSite(
            runner, where.host, where.port, reuse_port=binding.reuse_port or None, backlog=1024
        )
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise listen_error(LISTENER_FIELDS[name], where.address, exc) from None
    bound = Bound(runner, site, "https" if tls is not None else "http")
    log.info("listening", extra={"fields": {"listener": name, "url": bound.url}})
    return bound


def edge_limits(limits: LimitSettings) -> EdgeLimits:
    return EdgeLimits(
        handshake_timeout=limits.tls_handshake_timeout_seconds,
        header_timeout=limits.header_timeout_seconds,
        idle_timeout=limits.idle_timeout_seconds,
        max_connections=limits.max_connections,
        max_per_address=limits.max_connections_per_address,
        reconnect_rate=limits.reconnect_rate_after_refusals,
        reconnect_burst=limits.reconnect_burst_after_refusals,
    )
