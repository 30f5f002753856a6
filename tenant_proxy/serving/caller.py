"""What the pipeline learned of one request, as the executors read it, and the headers of a
request made upstream as the caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from tenant_proxy.headers import impersonation_headers, strip_client_headers
from tenant_proxy.identity import Identity
from tenant_proxy.observability.request_log import RequestLog
from tenant_proxy.requestinfo import RequestInfo
from tenant_proxy.serving import passthrough
from tenant_proxy.tenancy.model import TenantView
from tenant_proxy.tenancy.snapshot import TenancySnapshot

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


class CallerViews:
    """Each caller's view at one tenancy snapshot, kept until the snapshot changes.

    `TenancySnapshot.view_for` shares views between callers of the same memberships, but
    learning a caller's memberships reads every tenant's members: with hundreds of tenants that
    costs more than the rest of a small cached list. A snapshot is frozen, so a caller's view
    of it never changes; a new snapshot (any tenancy change) starts the memo afresh.
    """

    def __init__(self, kept: int = 10_000) -> None:
        self._kept = kept
        self._views: dict[Identity, TenantView | None] = {}
        self._of: TenancySnapshot | None = None

    def view(self, tenancy: TenancySnapshot, identity: Identity) -> TenantView | None:
        if tenancy is not self._of or len(self._views) >= self._kept:
            self._views, self._of = {}, tenancy
        try:
            return self._views[identity]
        except KeyError:
            view = self._views[identity] = tenancy.view_for(identity)
            return view


def caller_headers(
    request: web.Request, identity: Identity, is_upgrade: bool
) -> list[tuple[str, str]]:
    """The client's headers less credentials and hop-by-hop ones, plus impersonation."""
    headers = strip_client_headers(passthrough.decode_headers(request.raw_headers))
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
