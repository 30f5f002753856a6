"""Filtering list answers: JSON lists, PartialObjectMetadataLists and Tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from tenant_proxy.filtering.objects import META_API_VERSION, ObjectTest, partial_metadata, passes
from tenant_proxy.filtering.tables import filter_table, list_metadata


class NotAList(ValueError):
    """The body is not a JSON list or Table: refuse to pass what we cannot filter."""


def filter_list_doc(
    doc: Mapping[str, Any], owns: ObjectTest, *, as_partial: bool = False
) -> tuple[dict[str, Any], int]:
    if "items" not in doc:
        raise NotAList(f"a {doc.get('kind')!r} is not a list")
    items = doc["items"] if doc["items"] is not None else []
    if not isinstance(items, list):
        raise NotAList("items is not a list")
    kept = [item for item in items if passes(owns, item)]
    dropped = len(items) - len(kept)
    out = {**doc, "metadata": list_metadata(doc, dropped), "items": kept}
    if as_partial:
        out.update(kind="PartialObjectMetadataList", apiVersion=META_API_VERSION)
        out["items"] = [partial_metadata(item) for item in kept]
    return out, dropped


def filter_response(
    body: bytes,
    owns: ObjectTest,
    *,
    strip_objects: bool = False,
    metadata_only: bool = False,
) -> tuple[bytes, int]:
    """The whole list (or Table) body with only what `owns` accepts, and how many were dropped.

    `continue` and `resourceVersion` stay; `remainingItemCount` is dropped when anything was
    filtered. `metadata_only` answers PartialObjectMetadata built from whole objects (asked for
    because the rule reads spec fields). Lists are paged by `pages`; this serves a Table `get`
    and is the whole-body reference the page split is tested against.
    """
    doc = decode_object(body)
    if doc.get("kind") == "Table":
        table, dropped = filter_table(doc, owns, strip_objects, metadata_only)
        return orjson.dumps(table), dropped
    out, dropped = filter_list_doc(doc, owns, as_partial=metadata_only)
    return orjson.dumps(out), dropped


def decode_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or NotAList."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise NotAList(f"not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise NotAList("not a JSON object")
    return doc
