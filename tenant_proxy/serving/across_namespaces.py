"""Execute a ListAcrossNamespaces plan: a cluster-wide list of a namespaced resource for a
tenant, the union over its namespaces where RBAC refuses the cluster-wide one."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from tenant_proxy import status
from tenant_proxy.filtering.shape import ACCEPT_JSON, media_ranges
from tenant_proxy.requestinfo import RequestInfo
from tenant_proxy.serving import passthrough
from tenant_proxy.serving.caller import Call
from tenant_proxy.serving.forward import Forward
from tenant_proxy.tenancy.model import TenantView
from tenant_proxy.upstream import Upstream


class AcrossNamespaces:
    """A cluster-wide list of a namespaced resource (`kubectl get pods -A`, `describe node`).

    Asked first as the caller (passed through by `forward`); where RBAC refuses the
    cluster-wide list, the tenant gets the union of the same list in each of its namespaces,
    each asked as the caller, so RBAC still decides per namespace. Pages are not offered (the
    union has no single continue token). Bounded: at most `parallel` namespaces at once, each
    answer at most `max_list_bytes`.
    """

    def __init__(
        self,
        forward: Forward,
        upstream: Upstream,
        max_list_bytes: int = 64 * 1024 * 1024,
        parallel: int = 8,
    ) -> None:
        self._forward, self._upstream, self._max = forward, upstream, max_list_bytes
        self._parallel = parallel

    async def serve(self, request: web.Request, call: Call, view: TenantView) -> web.StreamResponse:
        sent = await self._forward.send(request, call)
        if sent.upstream.status != 403:
            return await self._forward.answer(request, call, sent)
        async with sent.upstream:
            denial = await sent.upstream.read()
        merged = await self._union(request, call.info, view, sent.headers)
        if merged is not None:
            return merged
        return web.Response(status=403, body=denial, content_type=sent.upstream.content_type)

    async def _union(
        self,
        request: web.Request,
        info: RequestInfo,
        view: TenantView,
        headers: list[tuple[str, str]],
    ) -> web.StreamResponse | None:
        """The merged answer, or None when not one namespace answered (the 403 is relayed)."""
        accept = [
            r
            for r in media_ranges(request.headers.get("Accept") or ACCEPT_JSON)
            if "protobuf" not in r.lower()
        ]
        if not accept:
            return None
        # The proxy reads these answers: JSON only, never compressed.
        asked = [h for h in headers if h[0].lower() not in ("accept", "accept-encoding")]
        asked.append(("Accept", ",".join(accept)))
        query = info.query.with_params({"limit": None, "continue": None})
        prefix = (
            "/api/v1" if info.api_prefix == "api" else f"/apis/{info.api_group}/{info.api_version}"
        )
        limit = asyncio.Semaphore(self._parallel)

        async def one(namespace: str) -> dict[str, Any] | None:
            async with limit:
                return await self._one(
                    f"{prefix}/namespaces/{namespace}/{info.resource}", query, asked
                )

        answers = await asyncio.gather(*(one(ns) for ns in sorted(view.namespaces)))
        docs = [doc for doc in answers if doc is not None]
        if not docs:
            return None
        return passthrough.json_response(orjson.dumps(merge_lists(docs)))

    async def _one(
        self, path: str, query: str, headers: list[tuple[str, str]]
    ) -> dict[str, Any] | None:
        resp = await self._upstream.send("GET", self._upstream.url(path, query), headers)
        async with resp:
            if resp.status != 200:
                return None
            body = bytearray()
            async for chunk in resp.content.iter_chunked(256 * 1024):
                body += chunk
                if len(body) > self._max:
                    raise status.bad_gateway("a namespace's list is larger than the proxy reads")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        return doc if isinstance(doc, dict) else None


def merge_lists(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One list (or Table) of all items (rows) of same-kind lists, in order. Pure."""
    first = dict(docs[0])
    key = "rows" if first.get("kind") == "Table" else "items"
    first[key] = [item for doc in docs for item in (doc.get(key) or [])]
    # Several lists have no single resourceVersion to resume from.
    first["metadata"] = {"resourceVersion": ""}
    return first
