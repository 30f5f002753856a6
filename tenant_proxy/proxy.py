"""The path of one request, top to bottom.

listener -> authenticate -> classify -> plan -> (pass through | filter | deny) -> client.

Everything that can go wrong becomes a Kubernetes Status here, in one place; nothing a client
sends can crash the process or reach the API server unauthenticated or un-impersonated.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import orjson
from aiohttp import web
from multidict import CIMultiDictProxy

from tenant_proxy import passthrough, reviews, status
from tenant_proxy.across_namespaces import AcrossNamespaces
from tenant_proxy.auth.base import AuthenticationError, Credentials, ForbiddenIdentity, bearer_token
from tenant_proxy.auth.chain import AuthChain
from tenant_proxy.auth.tokenreview import ReviewRateLimited
from tenant_proxy.filtered import FilteredReads
from tenant_proxy.filtering.shape import only_params
from tenant_proxy.headers import impersonation_headers, strip_client_headers, websocket_bearer
from tenant_proxy.identity import Identity
from tenant_proxy.namespace_requests import NamespaceRequests
from tenant_proxy.observability.audit_trail import Auditor
from tenant_proxy.observability.metrics import Metrics
from tenant_proxy.observability.request_log import RequestLog, request_id
from tenant_proxy.plan import (
    AmendReview,
    CreateNamespace,
    DeleteNamespace,
    Deny,
    Filter,
    ListAcrossNamespaces,
    ReadNodeLease,
    WhoAmI,
    plan_request,
)
from tenant_proxy.requestinfo import RequestInfo, classify
from tenant_proxy.streams import OpenStreams
from tenant_proxy.tenancy.index import TenancyIndex
from tenant_proxy.tenancy.model import NODES, TenantView
from tenant_proxy.tls import client_certificate
from tenant_proxy.upstream import Upstream, UpstreamError

log = logging.getLogger("tenant_proxy.proxy")

# The client's WebSocket subprotocols once a bearer-token one is taken out.
WS_PROTOCOLS = web.RequestKey("ws_protocols", str)
# What the pipeline learned of the request, for its log line and audit events.
REQUEST_LOG = web.RequestKey("request_log", RequestLog)

Delegate = Callable[[Identity, CIMultiDictProxy[str]], Awaitable[Identity]]

# What of the client's request a read made as the proxy carries.


@dataclass(frozen=True)
class Call:
    """What the pipeline learned about one request."""

    identity: Identity
    info: RequestInfo


@dataclass
class Pipeline:
    """The dependencies of one listener's request path."""

    upstream: Upstream
    auth: AuthChain
    metrics: Metrics
    listener: str  # "tenant" | "admin"
    max_body_bytes: int
    admit: Callable[[Identity], bool] = lambda _identity: True
    delegate: Delegate | None = None
    index: TenancyIndex | None = None
    reads: FilteredReads | None = None
    across: AcrossNamespaces | None = None
    namespaces: NamespaceRequests | None = None
    streams: OpenStreams = field(default_factory=OpenStreams)
    sync_timeout: float = 10.0
    auditor: Auditor = field(default_factory=Auditor)

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
        if self.delegate is not None:
            delegated = await self.delegate(identity, request.headers)
            if delegated != identity:
                identity = entry.impersonated = delegated
            entry.user = identity.user
        view = await self._view(identity)
        entry.tenants = ",".join(sorted(view.tenants)) if view is not None else ""
        ns = self.namespaces
        owner = (lambda: ns.is_owner(identity)) if ns is not None else (lambda: False)
        filters = view.filters if view is not None else None
        plan = plan_request(info, filters, self._owns_node(view), owner)
        match plan:
            case Deny(error):
                raise error
            case WhoAmI():
                await passthrough.read_body(request, self.max_body_bytes)  # a review; unused
                review = reviews.self_subject_review(identity, info.api_version)
                return passthrough.json_response(orjson.dumps(review), 201)
            case Filter(gr) if self.reads is not None and view is not None:
                entry.filtered = True
                response, entry.dropped = await self.reads.serve(request, info, gr, view, identity)
                return response
            case ListAcrossNamespaces() if view is not None and self.across is not None:
                return await self.forward(request, Call(identity, info), across=view)
            case AmendReview() if view is not None:
                return await self.amend_review(request, Call(identity=identity, info=info), view)
            case ReadNodeLease():
                return await self.read_node_lease(request, info)
            case CreateNamespace() if ns is not None:
                return await ns.create(request, info, identity)
            case DeleteNamespace() if ns is not None and view is not None:
                answer = await ns.delete(request, info, identity, view)
                if answer is not None:
                    return answer
                return await self.forward(request, Call(identity=identity, info=info))
            case _:
                return await self.forward(request, Call(identity=identity, info=info))

    async def _view(self, identity: Identity) -> TenantView | None:
        """The caller's tenancy view, once the index has synced (bounded wait, then 503):
        a view from a half-synced index would pass a member through, or filter wrongly."""
        if self.index is None:
            return None
        if not self.index.synced and not await self.index.wait_synced(self.sync_timeout):
            raise self.index.not_synced_error()
        return self.index.view_for(identity)

    def _owns_node(self, view: TenantView | None) -> Callable[[str], bool]:
        """Whether the index says the caller's tenants own a node of that name."""
        index = self.index
        if index is None or view is None:
            return lambda _name: False
        return lambda name: name in index.owned(NODES, view)

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

    async def amend_review(
        self, request: web.Request, call: Call, view: TenantView
    ) -> web.StreamResponse:
        """Ask the API server as the caller, then allow what the proxy serves filtered.

        The review goes as the client wrote it (a protobuf body with its Content-Type), but
        the answer is asked in JSON, which the proxy reads, amends and answers: a client that
        accepts only protobuf is 406."""
        if not reviews.accepts_json(request.headers.get("Accept")):
            raise status.not_acceptable(reviews.NOT_ACCEPTABLE)
        body = await passthrough.read_body(request, self.max_body_bytes)
        headers = [
            h
            for h in self._upstream_headers(request, call.identity, is_upgrade=False)
            if h[0].lower() != "accept"
        ]
        headers.append(("Accept", reviews.UPSTREAM_ACCEPT))
        url = self.upstream.url(call.info.path, call.info.query.raw)
        upstream = await self.upstream.send(request.method, url, headers, body)
        async with upstream:
            answer = await upstream.read()
            code, content_type = upstream.status, upstream.content_type
        try:
            review = orjson.loads(answer) if code in (200, 201) else None
        except orjson.JSONDecodeError:
            review = None
        if not isinstance(review, dict):
            return web.Response(status=code, body=answer, content_type=content_type)
        if call.info.resource == reviews.ACCESS:
            review = reviews.amend_access_review(review, view.filters, self._owns_node(view))
        else:
            review = reviews.amend_rules_review(review, view.rules.keys())
        return passthrough.json_response(orjson.dumps(review), code)

    async def read_node_lease(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        """The Lease of a node the caller owns, read with the proxy's own credentials (tenants
        have no RBAC in kube-node-lease) and relayed as the API server answered it. Only the
        client's Accept and resourceVersion go along: nothing else may shape the proxy's read."""
        headers = passthrough.read_headers(request)
        query = only_params(info.query.raw, ("resourceVersion",))
        upstream = await self.upstream.send("GET", self.upstream.url(info.path, query), headers)
        async with upstream:
            return await passthrough.relay(request, upstream)

    async def forward(
        self, request: web.Request, call: Call, across: TenantView | None = None
    ) -> web.StreamResponse:
        """Pass the request through as the caller: streamed both ways, upgrades spliced."""
        info = call.info
        is_upgrade = "upgrade" in request.headers.get("Connection", "").lower()
        headers = self._upstream_headers(request, call.identity, is_upgrade)
        passthrough.check_declared_length(request, self.max_body_bytes)
        body = None
        if request.body_exists and not is_upgrade:
            body = passthrough.RequestBody(request, self.max_body_bytes)
        url = self.upstream.url(info.path, info.query.raw)
        try:
            upstream = await self.upstream.send(request.method, url, headers, body)
        except (UpstreamError, aiohttp.ClientError):
            if body is not None and body.overflowed:
                raise status.too_large(self.max_body_bytes) from None
            raise
        if across is not None and upstream.status == 403 and self.across is not None:
            async with upstream:
                denial = await upstream.read()
            merged = await self.across.serve(request, info, across, headers)
            if merged is not None:
                return merged
            return web.Response(status=403, body=denial, content_type=upstream.content_type)
        if is_upgrade and upstream.status == 101:
            return await passthrough.splice_upgrade(request, upstream)
        async with upstream:
            if is_upgrade:
                # Refused upgrade: relay the answer, then never reuse this connection.
                return await passthrough.relay(request, upstream, close=True)
            if info.verb != "watch":
                return await passthrough.relay(request, upstream)
            forget = self.streams.add(upstream.close)
            open_watches = self.metrics.open_watches.labels(self.listener, "false")
            open_watches.inc()
            try:
                return await passthrough.relay(request, upstream, lambda: self.streams.draining)
            finally:
                open_watches.dec()
                forget()

    def _upstream_headers(
        self, request: web.Request, identity: Identity, is_upgrade: bool
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


def _request_log(request: web.Request, listener: str) -> RequestLog:
    raw_path, _, raw_query = request.raw_path.partition("?")
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return RequestLog(
        listener=listener,
        method=request.method,
        request_id=request_id(request.headers.get("Audit-Id")),
        source=str(peer[0]) if peer else "",
        path=raw_path,
        query=raw_query,
        user_agent=request.headers.get("User-Agent", "")[:256],
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
