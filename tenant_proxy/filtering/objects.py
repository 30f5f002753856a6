"""The shapes one object takes in an answer: whole, PartialObjectMetadata, or a Table row."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

ObjectTest = Callable[[Mapping[str, Any]], bool]
"""Whether the caller may see an object (tenancy.model.owns with the view and resource bound)."""

META_API_VERSION = "meta.k8s.io/v1"


def partial_metadata(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The PartialObjectMetadata the API server would send for `obj`."""
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": META_API_VERSION,
        "metadata": obj["metadata"],
    }


def object_key(obj: object) -> tuple[str, str] | None:
    """(namespace, name) of an object, or None when its metadata cannot be read."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        return None
    name, namespace = meta.get("name"), meta.get("namespace", "")
    if not isinstance(name, str) or not name or not isinstance(namespace, str):
        return None
    return namespace, name


def passes(owns: ObjectTest, obj: object) -> bool:
    """owns(obj), failing closed: an object without readable metadata is never kept."""
    if object_key(obj) is None:
        return False
    assert isinstance(obj, dict)
    try:
        return owns(obj)
    except (KeyError, TypeError, ValueError, AttributeError):
        return False


def everything(_obj: Mapping[str, Any]) -> bool:
    """The test of a client that selects nothing itself: one function, so that code sharing
    work between such clients can tell them by identity."""
    return True
