"""A tenant's page of a list, from a state the watch cache holds. Pure.

Objects are answered in name order (the API server's key order for cluster-scoped objects),
at most `limit` of them; when more of the caller's objects follow, the page says after which
name the next one starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tenant_proxy.filtering.objects import Keep, partial_metadata
from tenant_proxy.watchcache.replay import Side, visible
from tenant_proxy.watchcache.timeline import Obj

META_V1 = "meta.k8s.io/v1"


def page_of(
    state: Mapping[str, Obj],
    names: Iterable[str],
    side: Side | None,
    selected: Keep,
    after: str,
    limit: int | None,
) -> tuple[list[Obj], str | None]:
    """The caller's objects of `state` among `names` (sorted) past `after`, at most `limit`,
    and the last name answered when more follow (None: the list is complete)."""
    out: list[Obj] = []
    for name in names:
        if name <= after:
            continue
        obj = state.get(name)
        if not visible(side, selected, obj):
            continue
        if limit is not None and len(out) == limit:
            return out, str(out[-1]["metadata"]["name"])
        assert obj is not None
        out.append(obj)
    return out, None


def list_body(
    kind: str,
    api_version: str,
    items: list[Obj],
    rv: int,
    continue_token: str | None,
    metadata_only: bool,
) -> dict[str, Any]:
    """A JSON list as the API server writes it: items without kind and apiVersion (or
    PartialObjectMetadata with them)."""
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if continue_token:
        meta["continue"] = continue_token
    if metadata_only:
        return {
            "kind": "PartialObjectMetadataList",
            "apiVersion": META_V1,
            "metadata": meta,
            "items": [partial_metadata(o) for o in items],
        }
    bare = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items]
    return {"kind": f"{kind}List", "apiVersion": api_version, "metadata": meta, "items": bare}


def table_body(
    columns: list[Any] | None,
    rows: list[dict[str, Any]],
    rv: int,
    continue_token: str | None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if continue_token:
        meta["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": META_V1,
        "metadata": meta,
        "columnDefinitions": columns or [],
        "rows": rows,
    }
