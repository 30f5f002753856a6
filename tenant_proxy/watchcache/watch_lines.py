"""The lines a watch served from the cache writes: each event shaped as its client asked (the
object, its PartialObjectMetadata, or a Table of one row), bookmarks and errors. Pure.

An object or metadata line is the same for every watch that sends the same event, so it is
encoded once per timeline entry (the entry's memo, `shared`) rather than once per watch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from tenant_proxy import status
from tenant_proxy.filtering.objects import partial_metadata
from tenant_proxy.watchcache.ages import age_columns, with_ages
from tenant_proxy.watchcache.listing import META_V1, shown, table_body, table_row
from tenant_proxy.watchcache.replay import Out, stamped


def event_line(out: Out, partial: bool, shared: dict[Any, Any] | None = None) -> bytes:
    """`out` as a JSON line: the object (its resourceVersion stamped when `out` says so), or
    its PartialObjectMetadata."""
    key = ("line", id(out.obj), out.type, out.stamp, partial)
    if shared is not None and (line := shared.get(key)) is not None:
        return line  # type: ignore[no-any-return]
    obj = stamped(out.obj, out.stamp) if out.stamp is not None else out.obj
    payload = partial_metadata(obj) if partial else obj
    line = orjson.dumps({"type": out.type, "object": payload}) + b"\n"
    if shared is not None:
        # Keyed by the object's identity: the entry holds the object, so it cannot be reused.
        shared[key] = line
    return line


def table_line(
    out: Out,
    cells: Sequence[Any],
    columns: Sequence[Mapping[str, Any]],
    *,
    first: bool,
    partial: bool,
    strip_objects: bool,
    now: float,
) -> bytes:
    """`out` as a Table of one row (`cells`, its ages counted at `now`); the column
    definitions only in a watch's `first` Table, as the API server sends them."""
    obj = stamped(out.obj, out.stamp) if out.stamp is not None else out.obj
    row = table_row(
        with_ages(cells, age_columns(columns), obj, now),
        shown(None if strip_objects else obj, partial),
    )
    table = table_body(list(columns) if first else None, [row], resource_version(obj), None)
    return orjson.dumps({"type": out.type, "object": orjson.Fragment(table)}) + b"\n"


def bookmark_line(
    rv: int,
    kind: str,
    api_version: str,
    *,
    table: bool,
    partial: bool,
    initial_end: bool = False,
) -> bytes:
    """A BOOKMARK at `rv` in the client's form (with the initial-events-end annotation when
    it closes the initial events)."""
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    obj: dict[str, Any]
    if table:
        obj = {
            "kind": "Table",
            "apiVersion": META_V1,
            "metadata": meta,
            "columnDefinitions": None,
            "rows": [],
        }
    elif partial:
        obj = {"kind": "PartialObjectMetadata", "apiVersion": META_V1, "metadata": meta}
    else:
        obj = {"kind": kind, "apiVersion": api_version, "metadata": meta}
    return orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"


def error_line(err: status.ApiError) -> bytes:
    """The ERROR event that ends a watch with `err`'s Status."""
    return orjson.dumps({"type": "ERROR", "object": err.body()}) + b"\n"


def resource_version(obj: Mapping[str, Any]) -> int:
    """An object's resourceVersion as a number (0 when it has none)."""
    value = (obj.get("metadata") or {}).get("resourceVersion")
    return int(value) if isinstance(value, str) and value.isdigit() else 0
