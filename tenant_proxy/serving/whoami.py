"""Execute a WhoAmI plan: `kubectl auth whoami` answered by the proxy, which authenticated the
caller (the API server would only echo the impersonation)."""

from __future__ import annotations

import orjson
from aiohttp import web

from tenant_proxy import reviews
from tenant_proxy.serving import passthrough
from tenant_proxy.serving.caller import Call


class SelfReview:
    """SelfSubjectReviews, answered from the caller's identity."""

    def __init__(self, max_body_bytes: int) -> None:
        self._max_body = max_body_bytes

    async def serve(self, request: web.Request, call: Call) -> web.StreamResponse:
        await passthrough.read_body(request, self._max_body)  # a review; unused
        review = reviews.self_subject_review(call.identity, call.info.api_version)
        return passthrough.json_response(orjson.dumps(review), 201)
