"""Minimal OpenAPI documents: enough for `kubectl explain` and `kubectl apply`.

`/openapi/v3` lists one document per served group-version; each holds a schema per kind marked
with `x-kubernetes-group-version-kind` (explain and apply's patch computation find kinds by it):
`metadata` refers to a real ObjectMeta, a kind's other top-level fields carry their types, and
`spec` / `status` accept anything. Each resource also gets its REST paths; the PATCH operation
declares the `fieldValidation` parameter, which makes kubectl leave validation to the server
instead of validating client-side against these schemas. `/openapi/v2` carries the same schemas
without paths, so kubectl's v2 fallbacks find kinds but never compute patches from them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Protocol

from tenant_proxy.emulator.openapi_schemas import gvk, schema_name, schemas
from tenant_proxy.emulator.types import ResourceType

SERVER_VERSION = "v1.24.0-alpha.3"


CustomSchemas = Mapping[tuple[str, str, str], Mapping[str, Any]]
"""CRD openAPIV3Schemas by (group, version, kind)."""

_Frozen = tuple[tuple[tuple[str, str, str], str], ...]


class ResourceTable(Protocol):
    """What the OpenAPI documents need of the registry."""

    def all(self) -> list[ResourceType]: ...


def v3_root(registry: ResourceTable, custom_schemas: CustomSchemas | None = None) -> dict[str, Any]:
    """`/openapi/v3`: where each group-version's document is, with a content hash to cache by.

    `custom_schemas` gives custom kinds their CRD's schema instead of an open one.
    """
    types, frozen = _snapshot(registry), _freeze(custom_schemas)
    paths = {}
    for group, version in _group_versions(types):
        path = gv_path(group, version)
        digest = _v3_hash(types, frozen, group, version)
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}


def v3_group(
    registry: ResourceTable,
    group: str,
    version: str,
    custom_schemas: CustomSchemas | None = None,
) -> dict[str, Any] | None:
    """`/openapi/v3/api/v1` or `/openapi/v3/apis/<group>/<version>`; None when not served."""
    types = _snapshot(registry)
    if (group, version) not in _group_versions(types):
        return None
    text = _v3_text(types, _freeze(custom_schemas), group, version)
    return json.loads(text)  # type: ignore[no-any-return]


def v2(registry: ResourceTable, custom_schemas: CustomSchemas | None = None) -> dict[str, Any]:
    """`/openapi/v2`: a swagger 2.0 document with every served kind's schema and no paths."""
    types, custom = _snapshot(registry), dict(_thaw(_freeze(custom_schemas)))
    definitions = schemas(types, custom, ref_prefix="#/definitions/", v3=False)
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": SERVER_VERSION},
        "paths": {},
        "definitions": definitions,
    }


def gv_path(group: str, version: str) -> str:
    """The key of a group-version in the v3 index: `api/v1` or `apis/<group>/<version>`."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _snapshot(registry: ResourceTable) -> tuple[ResourceType, ...]:
    # Hashable and ordered, so documents are cached until the served resources change.
    return tuple(sorted(registry.all(), key=lambda rt: (rt.group, rt.version, rt.plural)))


def _freeze(custom_schemas: CustomSchemas | None) -> _Frozen:
    items = (custom_schemas or {}).items()
    return tuple(sorted((key, json.dumps(schema, sort_keys=True)) for key, schema in items))


def _thaw(frozen: _Frozen) -> Iterable[tuple[tuple[str, str, str], dict[str, Any]]]:
    return ((key, json.loads(text)) for key, text in frozen)


def _group_versions(types: Iterable[ResourceType]) -> list[tuple[str, str]]:
    return sorted({(rt.group, rt.version) for rt in types})


@lru_cache(maxsize=256)
def _v3_text(types: tuple[ResourceType, ...], frozen: _Frozen, group: str, version: str) -> str:
    served = tuple(rt for rt in types if rt.group == group and rt.version == version)
    components = schemas(served, dict(_thaw(frozen)), ref_prefix="#/components/schemas/", v3=True)
    document = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": SERVER_VERSION},
        "paths": _paths(served),
        "components": {"schemas": components},
    }
    return json.dumps(document, sort_keys=True)


@lru_cache(maxsize=256)
def _v3_hash(types: tuple[ResourceType, ...], frozen: _Frozen, group: str, version: str) -> str:
    text = _v3_text(types, frozen, group, version)
    return hashlib.sha512(text.encode()).hexdigest().upper()


# --- paths -----------------------------------------------------------------------------------

_PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)


def _paths(types: Iterable[ResourceType]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for rt in types:
        collection, item = _rest_paths(rt)
        collection_ops = _collection_operations(rt)
        item_ops = _item_operations(rt)
        if collection_ops:
            paths[collection] = collection_ops
        if item_ops:
            paths[item] = item_ops
    return paths


def _rest_paths(rt: ResourceType) -> tuple[str, str]:
    prefix = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
    scope = "/namespaces/{namespace}" if rt.namespaced else ""
    collection = f"{prefix}{scope}/{rt.plural}"
    return collection, collection + "/{name}"


def _collection_operations(rt: ResourceType) -> dict[str, Any]:
    ops: dict[str, Any] = {}
    if "list" in rt.verbs:
        ops["get"] = _operation(rt, "list", response=rt.list_kind)
    if "create" in rt.verbs:
        ops["post"] = _operation(rt, "post", body=True, params=_WRITE_PARAMS)
    return ops


def _item_operations(rt: ResourceType) -> dict[str, Any]:
    ops: dict[str, Any] = {}
    if "get" in rt.verbs:
        ops["get"] = _operation(rt, "get")
    if "update" in rt.verbs:
        ops["put"] = _operation(rt, "put", body=True, params=_WRITE_PARAMS)
    if "patch" in rt.verbs:
        ops["patch"] = _operation(rt, "patch", patch=True, params=(*_WRITE_PARAMS, "force"))
    if "delete" in rt.verbs:
        ops["delete"] = _operation(rt, "delete", response="Status")
    return ops


_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")


def _operation(
    rt: ResourceType,
    action: str,
    *,
    response: str = "",
    body: bool = False,
    patch: bool = False,
    params: tuple[str, ...] = (),
) -> dict[str, Any]:
    returned = response or rt.kind
    target = schema_name(rt) + ("List" if returned == rt.list_kind else "")
    ref = {"$ref": f"#/components/schemas/{target}"} if returned != "Status" else {"type": "object"}
    operation: dict[str, Any] = {
        "operationId": f"{action}{rt.kind}",
        "parameters": [{"name": p, "in": "query", "schema": {"type": "string"}} for p in params],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": ref}}}
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(rt),
    }
    if body:
        schema = {"$ref": f"#/components/schemas/{schema_name(rt)}"}
        operation["requestBody"] = {"content": {"*/*": {"schema": schema}}, "required": True}
    if patch:
        content = {t: {"schema": {"type": "object"}} for t in _PATCH_TYPES}
        operation["requestBody"] = {"content": content, "required": True}
    return operation


# --- descriptions ----------------------------------------------------------------------------
