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
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from tenant_proxy.emulator.types import ResourceType

SERVER_VERSION = "v1.24.0-alpha.3"
META = "io.k8s.apimachinery.pkg.apis.meta.v1"


CustomSchemas = Mapping[tuple[str, str, str], Mapping[str, Any]]
"""CRD openAPIV3Schemas by (group, version, kind)."""

_Frozen = tuple[tuple[tuple[str, str, str], str], ...]


class ResourceTable(Protocol):
    """What the OpenAPI documents need of the registry."""

    def all(self) -> list[ResourceType]: ...


@dataclass(frozen=True)
class Kind:
    """What the real schema says of a built-in kind: its name, description, top-level fields."""

    schema_name: str
    description: str
    fields: dict[str, str]


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
    definitions = _schemas(types, custom, ref_prefix="#/definitions/", v3=False)
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
    schemas = _schemas(served, dict(_thaw(frozen)), ref_prefix="#/components/schemas/", v3=True)
    document = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": SERVER_VERSION},
        "paths": _paths(served),
        "components": {"schemas": schemas},
    }
    return json.dumps(document, sort_keys=True)


@lru_cache(maxsize=256)
def _v3_hash(types: tuple[ResourceType, ...], frozen: _Frozen, group: str, version: str) -> str:
    text = _v3_text(types, frozen, group, version)
    return hashlib.sha512(text.encode()).hexdigest().upper()


# --- schemas ---------------------------------------------------------------------------------


def schema_name(rt: ResourceType) -> str:
    """The component name of a kind: the real one for built-ins, reversed-group for CRDs."""
    known = KINDS.get((rt.group, rt.kind))
    if known is not None and rt.version == "v1":
        return known.schema_name
    reversed_group = ".".join(reversed(rt.group.split("."))) if rt.group else "core"
    return f"{reversed_group}.{rt.version}.{rt.kind}"


def _schemas(
    types: Iterable[ResourceType],
    custom: Mapping[tuple[str, str, str], dict[str, Any]],
    *,
    ref_prefix: str,
    v3: bool,
) -> dict[str, Any]:
    schemas = _meta_schemas(ref_prefix)
    for rt in types:
        crd_schema = custom.get((rt.group, rt.version, rt.kind))
        if crd_schema is not None:
            schemas[schema_name(rt)] = _custom_kind_schema(rt, crd_schema, ref_prefix, v3=v3)
        else:
            schemas[schema_name(rt)] = _kind_schema(rt, ref_prefix, v3=v3)
        schemas[schema_name(rt) + "List"] = _list_schema(rt, ref_prefix)
    return schemas


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

_CONVENTIONS = "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md"
API_VERSION_DOC = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should "
    "convert recognized schemas to the latest internal value, and may reject unrecognized "
    f"values. More info: {_CONVENTIONS}#resources"
)
KIND_DOC = (
    "Kind is a string value representing the REST resource this object represents. Servers may "
    "infer this from the endpoint the client submits requests to. Cannot be updated. In "
    f"CamelCase. More info: {_CONVENTIONS}#types-kinds"
)
METADATA_DOC = f"Standard object's metadata. More info: {_CONVENTIONS}#metadata"
SPEC_DOC = f"Spec defines the behavior of the object. More info: {_CONVENTIONS}#spec-and-status"
STATUS_DOC = (
    "Status is the most recently observed status of the object. Populated by the system. "
    f"Read-only. More info: {_CONVENTIONS}#spec-and-status"
)
OBJECT_META_DOC = (
    "ObjectMeta is metadata that all persisted resources must have, which includes all objects "
    "users must create."
)
NAME_DOC = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "http://kubernetes.io/docs/user-guide/identifiers#names"
)
NAMESPACE_DOC = (
    "Namespace defines the space within which each name must be unique. An empty namespace is "
    'equivalent to the "default" namespace, but "default" is the canonical representation. Not '
    "all objects are required to be scoped to a namespace - the value of this field for those "
    "objects will be empty.\n\nMust be a DNS_LABEL. Cannot be updated. More info: "
    "http://kubernetes.io/docs/user-guide/namespaces"
)
LABELS_DOC = (
    "Map of string keys and values that can be used to organize and categorize (scope and "
    "select) objects. May match selectors of replication controllers and services. More info: "
    "http://kubernetes.io/docs/user-guide/labels"
)
ANNOTATIONS_DOC = (
    "Annotations is an unstructured key value map stored with a resource that may be set by "
    "external tools to store and retrieve arbitrary metadata. They are not queryable and should "
    "be preserved when modifying objects. More info: "
    "http://kubernetes.io/docs/user-guide/annotations"
)

# --- built-in kinds (from the Kubernetes API reference) ------------------------------------

KINDS: dict[tuple[str, str], Kind] = {
    ("", "Binding"): Kind(
        "io.k8s.api.core.v1.Binding",
        (
            "Binding ties one object to another; for example, a pod is bound to a node "
            "by a scheduler. Deprecated in 1.7, please use the bindings subresource of "
            "pods instead."
        ),
        {"target": "object"},
    ),
    ("", "ComponentStatus"): Kind(
        "io.k8s.api.core.v1.ComponentStatus",
        (
            "ComponentStatus (and ComponentStatusList) holds the cluster validation info. "
            "Deprecated: This API is deprecated in v1.19+"
        ),
        {"conditions": "array"},
    ),
    ("", "ConfigMap"): Kind(
        "io.k8s.api.core.v1.ConfigMap",
        ("ConfigMap holds configuration data for pods to consume."),
        {"binaryData": "object", "data": "object", "immutable": "boolean"},
    ),
    ("", "Endpoints"): Kind(
        "io.k8s.api.core.v1.Endpoints",
        ("Endpoints is a collection of endpoints that implement the actual service."),
        {"subsets": "array"},
    ),
    ("", "Event"): Kind(
        "io.k8s.api.core.v1.Event",
        (
            "Event is a report of an event somewhere in the cluster.  Events have a limited "
            "retention time and triggers and messages may evolve with time.  Event consumers "
            "should not rely on the timing of an event with a given Reason reflecting "
            "a consistent underlying trigger, or the continued existence of events with "
            "that Reason.  Events should be treated as informative, best-effort, supplemental "
            "data."
        ),
        {
            "action": "string",
            "count": "integer",
            "eventTime": "object",
            "firstTimestamp": "object",
            "involvedObject": "object",
            "lastTimestamp": "object",
            "message": "string",
            "reason": "string",
            "related": "object",
            "reportingComponent": "string",
            "reportingInstance": "string",
            "series": "object",
            "source": "object",
            "type": "string",
        },
    ),
    ("", "LimitRange"): Kind(
        "io.k8s.api.core.v1.LimitRange",
        ("LimitRange sets resource usage limits for each kind of resource in a Namespace."),
        {"spec": "object"},
    ),
    ("", "Namespace"): Kind(
        "io.k8s.api.core.v1.Namespace",
        ("Namespace provides a scope for Names. Use of multiple namespaces is optional."),
        {"spec": "object", "status": "object"},
    ),
    ("", "Node"): Kind(
        "io.k8s.api.core.v1.Node",
        (
            "Node is a worker node in Kubernetes. Each node will have a unique identifier "
            "in the cache (i.e. in etcd)."
        ),
        {"spec": "object", "status": "object"},
    ),
    ("", "PersistentVolumeClaim"): Kind(
        "io.k8s.api.core.v1.PersistentVolumeClaim",
        ("PersistentVolumeClaim is a user's request for and claim to a persistent volume"),
        {"spec": "object", "status": "object"},
    ),
    ("", "PersistentVolume"): Kind(
        "io.k8s.api.core.v1.PersistentVolume",
        (
            "PersistentVolume (PV) is a storage resource provisioned by an administrator. "
            "It is analogous to a node. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes"
        ),
        {"spec": "object", "status": "object"},
    ),
    ("", "Pod"): Kind(
        "io.k8s.api.core.v1.Pod",
        (
            "Pod is a collection of containers that can run on a host. This resource "
            "is created by clients and scheduled onto hosts."
        ),
        {"spec": "object", "status": "object"},
    ),
    ("", "PodTemplate"): Kind(
        "io.k8s.api.core.v1.PodTemplate",
        ("PodTemplate describes a template for creating copies of a predefined pod."),
        {"template": "object"},
    ),
    ("", "ResourceQuota"): Kind(
        "io.k8s.api.core.v1.ResourceQuota",
        ("ResourceQuota sets aggregate quota restrictions enforced per namespace"),
        {"spec": "object", "status": "object"},
    ),
    ("", "Secret"): Kind(
        "io.k8s.api.core.v1.Secret",
        (
            "Secret holds secret data of a certain type. The total bytes of the values "
            "in the Data field must be less than MaxSecretSize bytes."
        ),
        {"data": "object", "immutable": "boolean", "stringData": "object", "type": "string"},
    ),
    ("", "ServiceAccount"): Kind(
        "io.k8s.api.core.v1.ServiceAccount",
        (
            "ServiceAccount binds together: * a name, understood by users, and perhaps "
            "by peripheral systems, for an identity * a principal that can be authenticated "
            "and authorized * a set of secrets"
        ),
        {
            "automountServiceAccountToken": "boolean",
            "imagePullSecrets": "array",
            "secrets": "array",
        },
    ),
    ("", "Service"): Kind(
        "io.k8s.api.core.v1.Service",
        (
            "Service is a named abstraction of software service (for example, mysql) "
            "consisting of local port (for example 3306) that the proxy listens on, and "
            "the selector that determines which pods will answer requests sent through "
            "the proxy."
        ),
        {"spec": "object", "status": "object"},
    ),
    ("apps", "Deployment"): Kind(
        "io.k8s.api.apps.v1.Deployment",
        ("Deployment enables declarative updates for Pods and ReplicaSets."),
        {"spec": "object", "status": "object"},
    ),
    ("apps", "ReplicaSet"): Kind(
        "io.k8s.api.apps.v1.ReplicaSet",
        (
            "ReplicaSet ensures that a specified number of pod replicas are running at "
            "any given time."
        ),
        {"spec": "object", "status": "object"},
    ),
    ("apps", "StatefulSet"): Kind(
        "io.k8s.api.apps.v1.StatefulSet",
        (
            "StatefulSet represents a set of pods with consistent identities. Identities "
            "are defined as:\n  - Network: A single stable DNS and hostname.\n  - Storage: "
            "As many VolumeClaims as requested."
        ),
        {"spec": "object", "status": "object"},
    ),
    ("apps", "DaemonSet"): Kind(
        "io.k8s.api.apps.v1.DaemonSet",
        ("DaemonSet represents the configuration of a daemon set."),
        {"spec": "object", "status": "object"},
    ),
    ("authentication.k8s.io", "TokenReview"): Kind(
        "io.k8s.api.authentication.v1.TokenReview",
        (
            "TokenReview attempts to authenticate a token to a known user. Note: TokenReview "
            "requests may be cached by the webhook token authenticator plugin in the "
            "kube-apiserver."
        ),
        {"spec": "object", "status": "object"},
    ),
    ("authorization.k8s.io", "LocalSubjectAccessReview"): Kind(
        "io.k8s.api.authorization.v1.LocalSubjectAccessReview",
        (
            "LocalSubjectAccessReview checks whether or not a user or group can perform "
            "an action in a given namespace. Having a namespace scoped resource makes "
            "it much easier to grant namespace scoped policy that includes permissions "
            "checking."
        ),
        {"spec": "object", "status": "object"},
    ),
    ("authorization.k8s.io", "SelfSubjectAccessReview"): Kind(
        "io.k8s.api.authorization.v1.SelfSubjectAccessReview",
        (
            "SelfSubjectAccessReview checks whether or the current user can perform an "
            'action.  Not filling in a spec.namespace means "in all namespaces".  Self '
            "is a special case, because users should always be able to check whether "
            "they can perform an action"
        ),
        {"spec": "object", "status": "object"},
    ),
    ("authorization.k8s.io", "SelfSubjectRulesReview"): Kind(
        "io.k8s.api.authorization.v1.SelfSubjectRulesReview",
        (
            "SelfSubjectRulesReview enumerates the set of actions the current user can "
            "perform within a namespace. The returned list of actions may be incomplete "
            "depending on the server's authorization mode, and any errors experienced "
            "during the evaluation. SelfSubjectRulesReview should be used by UIs to show/hide "
            "actions, or to quickly let an end user reason about their permissions. It "
            "should NOT Be used by external systems to drive authorization decisions "
            "as this raises confused deputy, cache lifetime/revocation, and correctness "
            "concerns. SubjectAccessReview, and LocalAccessReview are the correct way "
            "to defer authorization decisions to the API server."
        ),
        {"spec": "object", "status": "object"},
    ),
    ("authorization.k8s.io", "SubjectAccessReview"): Kind(
        "io.k8s.api.authorization.v1.SubjectAccessReview",
        ("SubjectAccessReview checks whether or not a user or group can perform an action."),
        {"spec": "object", "status": "object"},
    ),
    ("coordination.k8s.io", "Lease"): Kind(
        "io.k8s.api.coordination.v1.Lease",
        ("Lease defines a lease concept."),
        {"spec": "object"},
    ),
    ("events.k8s.io", "Event"): Kind(
        "io.k8s.api.events.v1.Event",
        (
            "Event is a report of an event somewhere in the cluster. It generally denotes "
            "some state change in the system. Events have a limited retention time and "
            "triggers and messages may evolve with time.  Event consumers should not "
            "rely on the timing of an event with a given Reason reflecting a consistent "
            "underlying trigger, or the continued existence of events with that Reason. "
            " Events should be treated as informative, best-effort, supplemental data."
        ),
        {
            "action": "string",
            "deprecatedCount": "integer",
            "deprecatedFirstTimestamp": "object",
            "deprecatedLastTimestamp": "object",
            "deprecatedSource": "object",
            "eventTime": "object",
            "note": "string",
            "reason": "string",
            "regarding": "object",
            "related": "object",
            "reportingController": "string",
            "reportingInstance": "string",
            "series": "object",
            "type": "string",
        },
    ),
    ("networking.k8s.io", "IngressClass"): Kind(
        "io.k8s.api.networking.v1.IngressClass",
        (
            "IngressClass represents the class of the Ingress, referenced by the Ingress "
            "Spec. The `ingressclass.kubernetes.io/is-default-class` annotation can be "
            "used to indicate that an IngressClass should be considered default. When "
            "a single IngressClass resource has this annotation set to true, new Ingress "
            "resources without a class specified will be assigned this default class."
        ),
        {"spec": "object"},
    ),
    ("networking.k8s.io", "Ingress"): Kind(
        "io.k8s.api.networking.v1.Ingress",
        (
            "Ingress is a collection of rules that allow inbound connections to reach "
            "the endpoints defined by a backend. An Ingress can be configured to give "
            "services externally-reachable urls, load balance traffic, terminate SSL, "
            "offer name based virtual hosting etc."
        ),
        {"spec": "object", "status": "object"},
    ),
    ("networking.k8s.io", "NetworkPolicy"): Kind(
        "io.k8s.api.networking.v1.NetworkPolicy",
        ("NetworkPolicy describes what network traffic is allowed for a set of Pods"),
        {"spec": "object", "status": "object"},
    ),
    ("node.k8s.io", "RuntimeClass"): Kind(
        "io.k8s.api.node.v1.RuntimeClass",
        (
            "RuntimeClass defines a class of container runtime supported in the cluster. "
            "The RuntimeClass is used to determine which container runtime is used to "
            "run all containers in a pod. RuntimeClasses are manually defined by a user "
            "or cluster provisioner, and referenced in the PodSpec. The Kubelet is responsible "
            "for resolving the RuntimeClassName reference before running the pod.  For "
            "more details, see https://kubernetes.io/docs/concepts/containers/runtime-class/"
        ),
        {"handler": "string", "overhead": "object", "scheduling": "object"},
    ),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): Kind(
        "io.k8s.api.rbac.v1.ClusterRoleBinding",
        (
            "ClusterRoleBinding references a ClusterRole, but not contain it.  It can "
            "reference a ClusterRole in the global namespace, and adds who information "
            "via Subject."
        ),
        {"roleRef": "object", "subjects": "array"},
    ),
    ("rbac.authorization.k8s.io", "ClusterRole"): Kind(
        "io.k8s.api.rbac.v1.ClusterRole",
        (
            "ClusterRole is a cluster level, logical grouping of PolicyRules that can "
            "be referenced as a unit by a RoleBinding or ClusterRoleBinding."
        ),
        {"aggregationRule": "object", "rules": "array"},
    ),
    ("rbac.authorization.k8s.io", "RoleBinding"): Kind(
        "io.k8s.api.rbac.v1.RoleBinding",
        (
            "RoleBinding references a role, but does not contain it.  It can reference "
            "a Role in the same namespace or a ClusterRole in the global namespace. It "
            "adds who information via Subjects and namespace information by which namespace "
            "it exists in.  RoleBindings in a given namespace only have effect in that "
            "namespace."
        ),
        {"roleRef": "object", "subjects": "array"},
    ),
    ("rbac.authorization.k8s.io", "Role"): Kind(
        "io.k8s.api.rbac.v1.Role",
        (
            "Role is a namespaced, logical grouping of PolicyRules that can be referenced "
            "as a unit by a RoleBinding."
        ),
        {"rules": "array"},
    ),
    ("scheduling.k8s.io", "PriorityClass"): Kind(
        "io.k8s.api.scheduling.v1.PriorityClass",
        (
            "PriorityClass defines mapping from a priority class name to the priority "
            "integer value. The value can be any valid integer."
        ),
        {
            "description": "string",
            "globalDefault": "boolean",
            "preemptionPolicy": "string",
            "value": "integer",
        },
    ),
    ("storage.k8s.io", "StorageClass"): Kind(
        "io.k8s.api.storage.v1.StorageClass",
        (
            "StorageClass describes the parameters for a class of storage for which "
            "PersistentVolumes "
            "can be dynamically provisioned."
        ),
        {
            "allowVolumeExpansion": "boolean",
            "allowedTopologies": "array",
            "mountOptions": "array",
            "parameters": "object",
            "provisioner": "string",
            "reclaimPolicy": "string",
            "volumeBindingMode": "string",
        },
    ),
    ("apiextensions.k8s.io", "CustomResourceDefinition"): Kind(
        "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
        (
            "CustomResourceDefinition represents a resource that should be exposed on "
            "the API server.  Its name MUST be in the format <.spec.name>.<.spec.group>."
        ),
        {"spec": "object", "status": "object"},
    ),
}
"""Built-in kinds by (group, kind): schema name, description and top-level field types."""
