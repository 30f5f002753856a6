"""The path of one request, top to bottom.

listener -> authenticate -> admit -> classify -> delegate -> routes (plan -> executor) -> client.

Everything that can go wrong becomes a Kubernetes Status here, in one place; nothing a client
sends can crash the process or reach the API server unauthenticated or un-impersonated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from multidict import CIMultiDictProxy

from tenant_proxy import status
from tenant_proxy.auth.base import AuthenticationError, Credentials, ForbiddenIdentity, bearer_token
from tenant_proxy.auth.chain import AuthChain
from tenant_proxy.auth.tokenreview import ReviewRateLimited
from tenant_proxy.headers import websocket_bearer
from tenant_proxy.identity import Identity
from tenant_proxy.observability.audit_trail import Auditor
from tenant_proxy.observability.metrics import Metrics
from tenant_proxy.observability.request_log import RequestLog, request_id
from tenant_proxy.requestinfo import classify
from tenant_proxy.serving import passthrough
from tenant_proxy.serving.caller import REQUEST_LOG, WS_PROTOCOLS, Call, Routes
from tenant_proxy.tls import client_certificate
from tenant_proxy.upstream import UpstreamError

Delegate = Callable[[Identity, CIMultiDictProxy[str]], Awaitable[Identity]]


@dataclass
class Pipeline:
    """One listener's request path: what every request goes through, then its `routes`."""

    auth: AuthChain
    metrics: Metrics
    listener: str  # "tenant" | "admin"
    admit: Callable[[Identity], bool]
    delegate: Delegate  # `kubectl --as`
    routes: Routes
    auditor: Auditor

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        entry = _request_log(request, self.listener)
        request[REQUEST_LOG] = entry
        in_flight = self.metrics.in_flight.labels(self.listener)
        in_flight.inc()
        try:
            response = await self._serve(request, entry)
        except status.ApiError as err:
            response = self._failed(entry, err)
        except UpstreamError as exc:
            response = self._failed(
                entry,
                status.gateway_timeout(str(exc)) if exc.timeout else status.bad_gateway(str(exc)),
            )
        except asyncio.CancelledError:
            # The client left (a watch it closed, most often): the request still ends here,
            # with the status its answer started with (0 if none had).
            self._finished(entry, started)
            raise
        finally:
            in_flight.dec()
        entry.code = response.status
        self._finished(entry, started)
        return response

    def _finished(self, entry: RequestLog, started: float) -> None:
        entry.seconds = time.monotonic() - started
        self.metrics.observe(entry)
        entry.emit()
        self.auditor.completed(entry)

    @staticmethod
    def _failed(entry: RequestLog, err: status.ApiError) -> web.Response:
        entry.reason, entry.message = err.reason, err.message
        return _status_response(err)

    async def on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """As the answer's head goes out: the request id for the client (the API server's
        echo of it when relayed, else the proxy's), and a long-running answer's audit stage."""
        entry = request.get(REQUEST_LOG)
        if entry is None:
            return
        if "Audit-Id" not in response.headers:
            response.headers["Audit-Id"] = entry.request_id
        entry.code = response.status
        self.auditor.started(entry)

    async def _serve(self, request: web.Request, entry: RequestLog) -> web.StreamResponse:
        identity = await self._authenticate(request, entry)
        entry.user, entry.authenticated = identity.user, identity
        if not self.admit(identity):
            raise status.forbidden(
                f'User "{identity.user}" may not use the {self.listener} listener'
            )
        raw_path, _, raw_query = request.raw_path.partition("?")
        info = classify(request.method, raw_path, raw_query)
        entry.describe(info)
        self.auditor.received(entry)
        delegated = await self.delegate(identity, request.headers)
        if delegated != identity:
            identity = entry.impersonated = delegated
        entry.user = identity.user
        return await self.routes.serve(request, Call(identity, info), entry)

    async def _authenticate(self, request: web.Request, entry: RequestLog) -> Identity:
        creds, ws_protocols = _credentials(request)
        request[WS_PROTOCOLS] = ws_protocols
        try:
            identity = await self.auth.authenticate(creds)
        except ReviewRateLimited as exc:
            # 429, not 401: client-go retries after Retry-After, kubectl would give up on 401.
            entry.auth_failure = exc.reason
            self.metrics.auth_failure(exc.reason)
            raise status.too_many_requests(exc.retry_after) from None
        except AuthenticationError as exc:
            entry.auth_failure = exc.reason
            self.metrics.auth_failure(exc.reason)
            raise status.unauthorized() from None
        except ForbiddenIdentity as exc:
            entry.auth_failure = exc.reason
            self.metrics.auth_failure("forbidden identity")
            raise status.forbidden(exc.reason) from None
        entry.auth_method = identity.method
        return identity


def _request_log(request: web.Request, listener: str) -> RequestLog:
    raw_path, _, raw_query = request.raw_path.partition("?")
    peer = request.transport.get_extra_info("peername") if request.transport else None
    source = str(peer[0]) if peer else ""
    headers = request.headers
    return RequestLog(
        listener=listener,
        method=request.method,
        request_id=request_id(headers.get("Audit-Id")),
        source=source,
        forwarded_for=headers.get("X-Forwarded-For"),
        real_ip=headers.get("X-Real-Ip"),
        path=raw_path,
        query=raw_query,
        user_agent=headers.get("User-Agent", "")[:256],
    )


def _credentials(request: web.Request) -> tuple[Credentials, str]:
    """Credentials presented, and the WebSocket subprotocols left once a bearer one is taken."""
    authorizations = request.headers.getall("Authorization", [])
    if len(authorizations) > 1:
        token: str | None = ""  # two credentials: refuse rather than guess which one counts
    else:
        token = bearer_token(authorizations[0] if authorizations else None)
    ws_token, protocols = websocket_bearer(request.headers.get("Sec-WebSocket-Protocol", ""))
    if ws_token is not None:
        # As kube-apiserver: a subprotocol token counts on a WebSocket upgrade only, and
        # never beside another credential.
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        token = ws_token if token is None and websocket else ""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    cert, cert_problem = client_certificate(
        request.transport.get_extra_info("ssl_object") if request.transport else None
    )
    return (
        Credentials(
            peer_cert=cert,
            peer_cert_problem=cert_problem,
            bearer_token=token,
            remote_ip=str(peer[0]) if peer else "",
            headers=request.headers,
        ),
        protocols,
    )


def _status_response(err: status.ApiError) -> web.Response:
    response = passthrough.json_response(status.encode(err), err.code)
    for name, value in err.headers.items():
        response.headers[name] = value
    return response
