"""The schemas of the OpenAPI documents: built-in kinds as the API reference describes them
(data/openapi-kinds.yaml), custom kinds from their CRD's schema or open, and ObjectMeta."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tenant_proxy.emulator import data_files
from tenant_proxy.emulator.field_docs import (
    ANNOTATIONS_DOC,
    API_VERSION_DOC,
    KIND_DOC,
    LABELS_DOC,
    METADATA_DOC,
    NAME_DOC,
    NAMESPACE_DOC,
    OBJECT_META_DOC,
    SPEC_DOC,
    STATUS_DOC,
)
from tenant_proxy.emulator.types import ResourceType

META = "io.k8s.apimachinery.pkg.apis.meta.v1"


@dataclass(frozen=True)
class Kind:
    """What the real schema says of a built-in kind: its name, description, top-level fields."""

    schema_name: str
    description: str
    fields: dict[str, str]


def _kind(entry: Mapping[str, Any]) -> tuple[tuple[str, str], Kind]:
    fields = entry["fields"]
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items()):
        raise ValueError(f"openapi-kinds.yaml: {entry['kind']}: fields must map names to types")
    key = (str(entry["group"]), str(entry["kind"]))
    return key, Kind(str(entry["schema"]), str(entry["description"]), dict(fields))


KINDS: dict[tuple[str, str], Kind] = dict(
    _kind(entry) for entry in data_files.load("openapi-kinds.yaml")
)
"""Built-in kinds by (group, kind)."""


def schema_name(rt: ResourceType) -> str:
    """The component name of a kind: the real one for built-ins, reversed-group for CRDs."""
    known = KINDS.get((rt.group, rt.kind))
    if known is not None and rt.version == "v1":
        return known.schema_name
    reversed_group = ".".join(reversed(rt.group.split("."))) if rt.group else "core"
    return f"{reversed_group}.{rt.version}.{rt.kind}"


def schemas(
    types: Iterable[ResourceType],
    custom: Mapping[tuple[str, str, str], dict[str, Any]],
    *,
    ref_prefix: str,
    v3: bool,
) -> dict[str, Any]:
    out = _meta_schemas(ref_prefix)
    for rt in types:
        crd_schema = custom.get((rt.group, rt.version, rt.kind))
        if crd_schema is not None:
            out[schema_name(rt)] = _custom_kind_schema(rt, crd_schema, ref_prefix, v3=v3)
        else:
            out[schema_name(rt)] = _kind_schema(rt, ref_prefix, v3=v3)
        out[schema_name(rt) + "List"] = _list_schema(rt, ref_prefix)
    return out


def _ref(ref_prefix: str, name: str, *, v3: bool, description: str = "") -> dict[str, Any]:
    # v3 documents wrap references in allOf so that siblings such as a description stay valid.
    target = {"$ref": ref_prefix + name}
    schema: dict[str, Any] = {"allOf": [target]} if v3 else dict(target)
    if description:
        schema["description"] = description
    if v3:
        schema["default"] = {}
    return schema


def _kind_schema(rt: ResourceType, ref_prefix: str, *, v3: bool) -> dict[str, Any]:
    known = KINDS.get((rt.group, rt.kind))
    fields = dict(known.fields) if known else {"spec": "object", "status": "object"}
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string", "description": API_VERSION_DOC},
        "kind": {"type": "string", "description": KIND_DOC},
        "metadata": _ref(ref_prefix, f"{META}.ObjectMeta", v3=v3, description=METADATA_DOC),
    }
    for name, kind in sorted(fields.items()):
        properties[name] = _field_schema(name, kind)
    schema: dict[str, Any] = {
        "description": known.description if known else f"{rt.kind} is a custom resource.",
        "type": "object",
        "properties": properties,
        "x-kubernetes-group-version-kind": [gvk(rt)],
    }
    if known is None:
        schema["x-kubernetes-preserve-unknown-fields"] = True
    return schema


# Top-level fields of built-in kinds that are maps of strings.
_STRING_MAPS = frozenset(("binaryData", "data", "parameters", "stringData"))


def _custom_kind_schema(
    rt: ResourceType, crd_schema: dict[str, Any], ref_prefix: str, *, v3: bool
) -> dict[str, Any]:
    """A CRD's own schema, with the standard envelope fields as the real server publishes it."""
    properties = dict(crd_schema.get("properties") or {})
    properties.setdefault("apiVersion", {"type": "string", "description": API_VERSION_DOC})
    properties.setdefault("kind", {"type": "string", "description": KIND_DOC})
    properties["metadata"] = _ref(ref_prefix, f"{META}.ObjectMeta", v3=v3, description=METADATA_DOC)
    return {
        **crd_schema,
        "type": "object",
        "properties": properties,
        "x-kubernetes-group-version-kind": [gvk(rt)],
    }


def _field_schema(name: str, kind: str) -> dict[str, Any]:
    if kind == "object" and name in _STRING_MAPS:
        return {"type": "object", "additionalProperties": {"type": "string", "default": ""}}
    if kind == "object":
        description = {"spec": SPEC_DOC, "status": STATUS_DOC}.get(name, "")
        schema: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return schema | ({"description": description} if description else {})
    if kind == "array":
        return {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        }
    return {"type": kind}


def _list_schema(rt: ResourceType, ref_prefix: str) -> dict[str, Any]:
    return {
        "description": f"{rt.kind}List is a list of {rt.kind}.",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": API_VERSION_DOC},
            "kind": {"type": "string", "description": KIND_DOC},
            "items": {"type": "array", "items": {"$ref": ref_prefix + schema_name(rt)}},
            "metadata": {"$ref": f"{ref_prefix}{META}.ListMeta"},
        },
        "x-kubernetes-group-version-kind": [{**gvk(rt), "kind": rt.list_kind}],
    }


def gvk(rt: ResourceType) -> dict[str, str]:
    return {"group": rt.group, "kind": rt.kind, "version": rt.version}


def _meta_schemas(ref_prefix: str) -> dict[str, Any]:
    string_map = {"type": "object", "additionalProperties": {"type": "string", "default": ""}}
    strings = {"type": "array", "items": {"type": "string", "default": ""}}
    time = {"$ref": f"{ref_prefix}{META}.Time"}
    object_meta = {
        "annotations": string_map | {"description": ANNOTATIONS_DOC},
        "creationTimestamp": time,
        "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
        "deletionTimestamp": time,
        "finalizers": strings | {"x-kubernetes-patch-strategy": "merge"},
        "generateName": {"type": "string"},
        "generation": {"type": "integer", "format": "int64"},
        "labels": string_map | {"description": LABELS_DOC},
        "managedFields": {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
        "name": {"type": "string", "description": NAME_DOC},
        "namespace": {"type": "string", "description": NAMESPACE_DOC},
        "ownerReferences": {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "x-kubernetes-patch-merge-key": "uid",
            "x-kubernetes-patch-strategy": "merge",
        },
        "resourceVersion": {"type": "string"},
        "selfLink": {"type": "string"},
        "uid": {"type": "string"},
    }
    list_meta = {
        "continue": {"type": "string"},
        "remainingItemCount": {"type": "integer", "format": "int64"},
        "resourceVersion": {"type": "string"},
        "selfLink": {"type": "string"},
    }
    return {
        f"{META}.ObjectMeta": {
            "description": OBJECT_META_DOC,
            "type": "object",
            "properties": object_meta,
        },
        f"{META}.ListMeta": {"type": "object", "properties": list_meta},
        f"{META}.Time": {"type": "string", "format": "date-time"},
    }
