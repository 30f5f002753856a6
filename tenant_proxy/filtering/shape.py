"""What a filtered read asks upstream, and how its answers are shaped: pure helpers."""

from __future__ import annotations

from dataclasses import dataclass

from tenant_proxy import status
from tenant_proxy.requestinfo import RequestInfo

ACCEPT_JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Shape:
    """How the client wants objects, and what to ask upstream so the proxy can judge them."""

    accept: str  # forwarded upstream
    table: bool
    partial: bool  # PartialObjectMetadata(List) or Table rows reduced to metadata
    include_object: str | None  # upstream includeObject for Tables (None: leave the query as is)
    strip_objects: bool  # client asked includeObject=None
    yaml: bool = False  # the client prefers YAML: read JSON, answer YAML


def media_ranges(accept: str) -> list[str]:
    return [part.strip() for part in accept.split(",") if part.strip()]


def shape_for(accept_header: str | None, info: RequestInfo, full_object: bool) -> Shape:
    """Pure: what to ask upstream for a filtered read, from the client's Accept and query.

    Protobuf is never asked for (the proxy must read the answer): with a JSON alternative the
    client gets JSON, as the API server itself would answer; protobuf alone is 406.
    """
    ranges = media_ranges(accept_header or ACCEPT_JSON)
    usable = [r for r in ranges if "protobuf" not in r.lower()]
    if not usable:
        raise status.not_acceptable(
            "only the following media types are accepted: application/json, "
            "application/json;as=Table;v=v1;g=meta.k8s.io"
        )
    first = usable[0].replace(" ", "").lower()
    if first.split(";")[0] == "application/yaml":
        # The API server serves lists and objects as YAML; the proxy reads JSON to judge them.
        json_shape = shape_for(ACCEPT_JSON, info, full_object)
        return Shape(ACCEPT_JSON, False, json_shape.partial, None, False, yaml=True)
    table = "as=table" in first
    partial = "as=partialobjectmetadata" in first
    client_include = info.query.include_object or "Metadata"
    if table:
        upstream_include = "Object" if full_object else "Metadata"
        if client_include == "Object":
            upstream_include = "Object"
        return Shape(
            accept=",".join(usable),
            table=True,
            partial=client_include != "Object" and full_object,
            include_object=upstream_include,
            strip_objects=client_include == "None",
        )
    if partial and full_object:
        # The rule reads spec fields: ask for whole objects and reduce them here.
        return Shape(ACCEPT_JSON, False, True, None, False)
    return Shape(",".join(usable), False, False, None, False)


def watch_shape(accept_header: str | None, info: RequestInfo) -> Shape:
    """Pure: how a watch served from whole objects is shaped. A watch streams JSON (or
    protobuf, which the proxy does not speak): a client accepting neither gets the API
    server's 406."""
    ranges = media_ranges(accept_header or ACCEPT_JSON)
    streamable = [r for r in ranges if r.split(";")[0].strip().lower() in _STREAM_TYPES]
    if not streamable:
        raise status.not_acceptable(
            "only the following media types are accepted: application/json, "
            "application/json;stream=watch"
        )
    return shape_for(",".join(streamable), info, full_object=True)


_STREAM_TYPES = frozenset({"application/json", "application/*", "*/*"})


def only_params(raw_query: str, keep: tuple[str, ...]) -> str:
    """The chunks of `raw_query` whose (undecoded) key is one of `keep`. Pure."""
    return "&".join(c for c in raw_query.split("&") if c.split("=", 1)[0] in keep)
