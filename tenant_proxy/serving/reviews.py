"""Execute an AmendReview plan: a SelfSubject(Access|Rules)Review asked as the caller, then
allowed for what the proxy serves filtered and the namespaces it creates and deletes for an
owner (the pure rules are `tenant_proxy.reviews`)."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from aiohttp import web

from tenant_proxy import reviews, status
from tenant_proxy.identity import Identity
from tenant_proxy.serving import passthrough
from tenant_proxy.serving.caller import Call, caller_headers
from tenant_proxy.tenancy.model import TenantView
from tenant_proxy.tenancy.self_service import OwnerRights
from tenant_proxy.upstream import Upstream

OwnsNode = Callable[[TenantView], Callable[[str], bool]]
"""Whether the view's tenants own a node of that name."""
Rights = Callable[[Identity], OwnerRights]
"""The namespace creates and deletes the proxy makes for the caller (self-service)."""


class ReviewAmendment:
    """Access reviews answered for what the proxy serves."""

    def __init__(
        self, upstream: Upstream, owns_node: OwnsNode, rights: Rights, max_body_bytes: int
    ) -> None:
        self._upstream, self._owns_node, self._max_body = upstream, owns_node, max_body_bytes
        self._rights = rights

    async def serve(self, request: web.Request, call: Call, view: TenantView) -> web.StreamResponse:
        """Ask the API server as the caller, then allow what the proxy serves filtered.

        The review goes as the client wrote it (a protobuf body with its Content-Type), but
        the answer is asked in JSON, which the proxy reads, amends and answers: a client that
        accepts only protobuf is 406."""
        if not reviews.accepts_json(request.headers.get("Accept")):
            raise status.not_acceptable(reviews.NOT_ACCEPTABLE)
        body = await passthrough.read_body(request, self._max_body)
        headers = [
            h
            for h in caller_headers(request, call.identity, is_upgrade=False)
            if h[0].lower() != "accept"
        ]
        headers.append(("Accept", reviews.UPSTREAM_ACCEPT))
        url = self._upstream.url(call.info.path, call.info.query.raw)
        upstream = await self._upstream.send(request.method, url, headers, body)
        async with upstream:
            answer = await upstream.read()
            code, content_type = upstream.status, upstream.content_type
        try:
            review = orjson.loads(answer) if code in (200, 201) else None
        except orjson.JSONDecodeError:
            review = None
        if not isinstance(review, dict):
            return web.Response(status=code, body=answer, content_type=content_type)
        rights = self._rights(call.identity)
        if call.info.resource == reviews.ACCESS:
            review = reviews.amend_access_review(
                review, view.filters, self._owns_node(view), rights
            )
        else:
            review = reviews.amend_rules_review(review, view.rules.keys(), rights)
        return passthrough.json_response(orjson.dumps(review), code)
