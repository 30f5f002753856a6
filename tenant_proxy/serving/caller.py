"""What the pipeline learned of one request, as the executors read it, and the headers of a
request made upstream as the caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from tenant_proxy.headers import forwarded_for, impersonation_headers, strip_client_headers
from tenant_proxy.identity import Identity
from tenant_proxy.observability.request_log import RequestLog
from tenant_proxy.requestinfo import RequestInfo
from tenant_proxy.serving import passthrough

# The client's WebSocket subprotocols once a bearer-token one is taken out.
WS_PROTOCOLS = web.RequestKey("ws_protocols", str)
# What the pipeline learned of the request, for its log line and audit events.
REQUEST_LOG = web.RequestKey("request_log", RequestLog)


@dataclass(frozen=True)
class Call:
    """What the pipeline learned about one request."""

    identity: Identity
    info: RequestInfo


class Routes(Protocol):
    """What a listener does with an authenticated, classified request (`serving/routes.py`)."""

    async def serve(
        self, request: web.Request, call: Call, entry: RequestLog
    ) -> web.StreamResponse: ...


def caller_headers(
    request: web.Request, identity: Identity, is_upgrade: bool
) -> list[tuple[str, str]]:
    """The client's headers less credentials and hop-by-hop ones, its address appended to
    X-Forwarded-For, plus impersonation."""
    headers = strip_client_headers(passthrough.decode_headers(request.raw_headers))
    headers = forwarded_for(headers, request[REQUEST_LOG].source)
    headers += impersonation_headers(identity)
    # The subprotocols go on without a bearer-token one, upgrade or not: a token never
    # travels upstream. The request id goes as Audit-Id: the API server adopts it, so its
    # audit log, its answer's Audit-Id and the proxy's logs all name the request alike.
    headers = [h for h in headers if h[0].lower() not in ("sec-websocket-protocol", "audit-id")]
    headers.append(("Audit-Id", request[REQUEST_LOG].request_id))
    if request[WS_PROTOCOLS]:
        headers.append(("Sec-WebSocket-Protocol", request[WS_PROTOCOLS]))
    if is_upgrade:
        headers += [("Connection", "Upgrade"), ("Upgrade", request.headers.get("Upgrade", ""))]
    return headers
