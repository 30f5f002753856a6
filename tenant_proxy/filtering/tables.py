"""Filtering `meta.k8s.io/v1` Tables row by row, by each row's object metadata."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tenant_proxy.filtering.objects import ObjectTest, partial_metadata, passes


def filter_table(
    table: Mapping[str, Any], owns: ObjectTest, strip_objects: bool, metadata_only: bool = False
) -> tuple[dict[str, Any], int]:
    """The table with only the rows `owns` accepts, and how many rows were dropped.

    A row without a readable `object.metadata` is dropped (fail closed), so the proxy asks
    upstream for includeObject=Metadata (or Object) and, when the client asked for None, strips
    the objects here (`strip_objects`: `object` becomes null, as the server sends it).
    `metadata_only` turns whole objects (asked for when a rule reads spec fields) back into the
    PartialObjectMetadata the client asked for.
    """
    rows = table.get("rows") or []
    if not isinstance(rows, list):
        rows = []
    kept = [shape_row(r, strip_objects, metadata_only) for r in rows if row_kept(owns, r)]
    dropped = len(rows) - len(kept)
    return {**table, "rows": kept, "metadata": list_metadata(table, dropped)}, dropped


def row_kept(owns: ObjectTest, row: object) -> bool:
    return isinstance(row, dict) and passes(owns, row.get("object"))


def shape_row(row: Mapping[str, Any], strip_objects: bool, metadata_only: bool) -> dict[str, Any]:
    """The row as the client asked for it."""
    if strip_objects:
        return {**row, "object": None}
    obj = row["object"]
    if metadata_only and obj.get("kind") != "PartialObjectMetadata":
        return {**row, "object": partial_metadata(obj)}
    return dict(row)


def list_metadata(doc: Mapping[str, Any], dropped: int) -> dict[str, Any]:
    """List metadata kept as is (continue, resourceVersion), minus a count filtering falsified."""
    meta = doc.get("metadata")
    meta = dict(meta) if isinstance(meta, dict) else {}
    if dropped:
        meta.pop("remainingItemCount", None)
    return meta
