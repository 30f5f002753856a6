"""The get of one object of a filtered resource, read upstream as the proxy: the object if the
caller's view keeps it, else exactly the API server's 404 for a missing one."""

from __future__ import annotations

import orjson
from aiohttp import web

from tenant_proxy import status
from tenant_proxy.filtering.lists import filter_response
from tenant_proxy.filtering.objects import ObjectTest, partial_metadata
from tenant_proxy.filtering.shape import Shape
from tenant_proxy.kube.resources import GroupResource
from tenant_proxy.requestinfo import RequestInfo
from tenant_proxy.serving import passthrough
from tenant_proxy.serving.bodies import BodyLimits, answer, read_bounded, upstream_query
from tenant_proxy.upstream import Upstream


class FilteredGet:
    """Gets of filtered resources' objects, read upstream."""

    def __init__(self, upstream: Upstream, limits: BodyLimits) -> None:
        self._upstream, self._limits = upstream, limits

    async def serve(
        self,
        request: web.Request,
        info: RequestInfo,
        gr: GroupResource,
        shape: Shape,
        owns: ObjectTest,
    ) -> web.StreamResponse:
        url = self._upstream.url(info.path, upstream_query(info.query, shape, None))
        resp = await self._upstream.send(
            "GET", url, passthrough.read_headers(request, shape.accept)
        )
        async with resp:
            if resp.status != 200:
                # 404 (or any error) is the API server's own answer about a name: relay it.
                if resp.status == 404:
                    raise not_found(gr, info.name)
                return await passthrough.relay(request, resp)
            body = await read_bounded(resp, self._limits)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise status.bad_gateway("the API server answered a read with non-JSON") from exc
        if doc.get("kind") == "Table":
            filtered, dropped = filter_response(
                body, owns, strip_objects=shape.strip_objects, metadata_only=shape.partial
            )
            if dropped or not orjson.loads(filtered).get("rows"):
                raise not_found(gr, info.name)
            return answer(filtered, shape)
        if not owns(doc):
            # Exactly the API server's answer for a missing object: existence never leaks.
            raise not_found(gr, info.name)
        if shape.partial and doc.get("kind") != "PartialObjectMetadata":
            body = orjson.dumps(partial_metadata(doc))
        return answer(body, shape)


def not_found(gr: GroupResource, name: str) -> status.ApiError:
    return status.not_found(gr.resource, name, gr.group)
