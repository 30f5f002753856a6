"""OpenAPI documents: the shapes kubectl explain and apply rely on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.emulator import field_docs, openapi, openapi_schemas
from tenant_proxy.emulator.types import ResourceType

NAMESPACES = ResourceType(
    "",
    "v1",
    "namespaces",
    "namespace",
    "Namespace",
    False,
    verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
)
CONFIGMAPS = ResourceType("", "v1", "configmaps", "configmap", "ConfigMap", True)
REVIEWS = ResourceType(
    "authorization.k8s.io",
    "v1",
    "selfsubjectaccessreviews",
    "selfsubjectaccessreview",
    "SelfSubjectAccessReview",
    False,
    verbs=("create",),
)
WIDGETS = ResourceType("example.com", "v1", "widgets", "widget", "Widget", True)


@dataclass
class Table:
    types: list[ResourceType] = field(default_factory=list)

    def all(self) -> list[ResourceType]:
        return list(self.types)


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def kind_schema(doc: dict[str, Any], rt: ResourceType) -> dict[str, Any]:
    wanted = openapi_schemas.gvk(rt)
    found: list[dict[str, Any]] = [
        s
        for s in doc["components"]["schemas"].values()
        if wanted in s.get("x-kubernetes-group-version-kind", [])
    ]
    assert len(found) == 1
    return found[0]


def test_v3_index_points_at_each_served_group_version_with_a_hash() -> None:
    root = openapi.v3_root(Table([NAMESPACES, CONFIGMAPS, REVIEWS, WIDGETS]))
    assert sorted(root["paths"]) == [
        "api/v1",
        "apis/authorization.k8s.io/v1",
        "apis/example.com/v1",
    ]
    url = urlsplit(root["paths"]["apis/example.com/v1"]["serverRelativeURL"])
    assert url.path == "/openapi/v3/apis/example.com/v1"
    assert len(parse_qs(url.query)["hash"][0]) == 128


def test_v3_hash_changes_when_the_served_kinds_change() -> None:
    before = openapi.v3_root(Table([NAMESPACES]))["paths"]["api/v1"]
    after = openapi.v3_root(Table([NAMESPACES, CONFIGMAPS]))["paths"]["api/v1"]
    again = openapi.v3_root(Table([CONFIGMAPS, NAMESPACES]))["paths"]["api/v1"]
    assert before != after
    assert after == again


def test_each_kind_has_one_schema_marked_with_its_group_version_kind() -> None:
    doc = openapi.v3_group(Table([NAMESPACES, CONFIGMAPS]), "", "v1")
    assert doc is not None
    namespace = kind_schema(doc, NAMESPACES)
    assert namespace["description"].startswith("Namespace provides a scope for Names.")
    assert set(namespace["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}
    assert namespace["properties"]["spec"]["x-kubernetes-preserve-unknown-fields"] is True
    configmap = kind_schema(doc, CONFIGMAPS)
    assert configmap["properties"]["data"]["additionalProperties"]["type"] == "string"


def test_every_reference_resolves_within_the_document() -> None:
    doc = openapi.v3_group(Table([NAMESPACES, CONFIGMAPS]), "", "v1")
    assert doc is not None
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_object_meta_carries_the_patch_strategies_of_its_lists() -> None:
    doc = openapi.v3_group(Table([NAMESPACES]), "", "v1")
    assert doc is not None
    meta = doc["components"]["schemas"][f"{openapi_schemas.META}.ObjectMeta"]["properties"]
    assert meta["finalizers"]["x-kubernetes-patch-strategy"] == "merge"
    assert meta["ownerReferences"]["x-kubernetes-patch-merge-key"] == "uid"
    assert {"labels", "annotations", "name", "namespace", "uid"} <= set(meta)


def test_patch_operations_declare_field_validation_for_their_kind() -> None:
    doc = openapi.v3_group(Table([CONFIGMAPS]), "", "v1")
    assert doc is not None
    item = doc["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]
    patch = item["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "",
        "kind": "ConfigMap",
        "version": "v1",
    }
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
    assert set(item) == {"get", "put", "patch", "delete"}
    assert set(doc["paths"]["/api/v1/namespaces/{namespace}/configmaps"]) == {"get", "post"}


def test_create_only_resources_have_only_a_post() -> None:
    doc = openapi.v3_group(Table([REVIEWS]), "authorization.k8s.io", "v1")
    assert doc is not None
    assert doc["paths"] == {
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews": {
            "post": doc["paths"]["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"]["post"]
        }
    }


def test_custom_kinds_accept_any_top_level_field() -> None:
    doc = openapi.v3_group(Table([WIDGETS]), "example.com", "v1")
    assert doc is not None
    schema = kind_schema(doc, WIDGETS)
    assert schema["x-kubernetes-preserve-unknown-fields"] is True
    assert "com.example.v1.Widget" in doc["components"]["schemas"]


def test_unserved_group_version_has_no_document() -> None:
    assert openapi.v3_group(Table([NAMESPACES]), "", "v2") is None
    assert openapi.v3_group(Table([NAMESPACES]), "apps", "v1") is None


def test_v2_has_every_kind_and_no_paths() -> None:
    doc = openapi.v2(Table([NAMESPACES, WIDGETS]))
    assert doc["swagger"] == "2.0"
    assert doc["paths"] == {}
    kinds = [
        g for s in doc["definitions"].values() for g in s.get("x-kubernetes-group-version-kind", [])
    ]
    assert openapi_schemas.gvk(NAMESPACES) in kinds
    assert openapi_schemas.gvk(WIDGETS) in kinds
    for ref in refs(doc):
        assert ref.removeprefix("#/definitions/") in doc["definitions"], ref


@given(st.lists(st.sampled_from([NAMESPACES, CONFIGMAPS, REVIEWS, WIDGETS]), unique=True))
def test_documents_are_json_and_indexed_exactly_once(types: list[ResourceType]) -> None:
    table = Table(types)
    root = openapi.v3_root(table)
    assert len(root["paths"]) == len({(rt.group, rt.version) for rt in types})
    for rt in types:
        doc = openapi.v3_group(table, rt.group, rt.version)
        assert json.loads(json.dumps(doc)) == doc


WIDGET_SCHEMA = {
    "type": "object",
    "description": "A widget of the example API.",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {"size": {"type": "integer", "description": "How big the widget is."}},
        },
        "metadata": {"type": "object"},
    },
}


def test_custom_kind_publishes_its_crd_schema_with_standard_metadata() -> None:
    custom = {("example.com", "v1", "Widget"): WIDGET_SCHEMA}
    doc = openapi.v3_group(Table([WIDGETS]), "example.com", "v1", custom)
    assert doc is not None
    schema = kind_schema(doc, WIDGETS)
    assert schema["description"] == "A widget of the example API."
    assert schema["properties"]["spec"]["properties"]["size"]["type"] == "integer"
    assert schema["properties"]["metadata"]["allOf"] == [
        {"$ref": f"#/components/schemas/{openapi_schemas.META}.ObjectMeta"}
    ]
    assert "x-kubernetes-preserve-unknown-fields" not in schema


def test_crd_schema_changes_the_hash_of_its_group_version_only() -> None:
    table = Table([NAMESPACES, WIDGETS])
    plain = openapi.v3_root(table)["paths"]
    custom = openapi.v3_root(table, {("example.com", "v1", "Widget"): WIDGET_SCHEMA})["paths"]
    assert plain["api/v1"] == custom["api/v1"]
    assert plain["apis/example.com/v1"] != custom["apis/example.com/v1"]


def test_v2_carries_crd_schemas_too() -> None:
    doc = openapi.v2(Table([WIDGETS]), {("example.com", "v1", "Widget"): WIDGET_SCHEMA})
    widget = doc["definitions"]["com.example.v1.Widget"]
    assert widget["properties"]["metadata"] == {
        "$ref": f"#/definitions/{openapi_schemas.META}.ObjectMeta",
        "description": field_docs.METADATA_DOC,
    }
