"""The pure helpers of filtered reads: what to ask upstream, and reading one object of a list."""

from __future__ import annotations

import pytest

from tenant_proxy import status
from tenant_proxy.filtering.shape import only_params, shape_for
from tenant_proxy.requestinfo import classify
from tenant_proxy.serving.across_namespaces import merge_lists

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
PARTIAL = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"


def info(query: str = "") -> object:
    return classify("GET", "/api/v1/persistentvolumes", query)


def test_protobuf_with_a_json_alternative_is_asked_as_json() -> None:
    shape = shape_for("application/vnd.kubernetes.protobuf,application/json", info(), False)
    assert shape.accept == "application/json"


def test_protobuf_only_is_406() -> None:
    with pytest.raises(status.ApiError) as err:
        shape_for("application/vnd.kubernetes.protobuf", info(), False)
    assert err.value.code == 406


@pytest.mark.parametrize(
    ("query", "full", "upstream_include", "strip", "partial"),
    [
        ("", False, "Metadata", False, False),
        ("includeObject=None", False, "Metadata", True, False),
        ("includeObject=Object", False, "Object", False, False),
        ("", True, "Object", False, True),  # the rule reads spec: ask whole, answer metadata
        ("includeObject=None", True, "Object", True, True),
    ],
)
def test_table_reads_ask_for_what_the_proxy_must_judge(
    query: str, full: bool, upstream_include: str, strip: bool, partial: bool
) -> None:
    shape = shape_for(TABLE, info(query), full)
    assert (shape.table, shape.include_object, shape.strip_objects, shape.partial) == (
        True,
        upstream_include,
        strip,
        partial,
    )


def test_metadata_only_client_of_a_spec_rule_gets_whole_objects_reduced() -> None:
    shape = shape_for(PARTIAL, info(), True)
    assert (shape.accept, shape.partial) == ("application/json", True)


def test_only_params_keeps_the_named_chunks_byte_for_byte() -> None:
    raw = "watch=1&labelSelector=a%3Db&resourceVersion=5&fieldSelector=metadata.name%3Dx"
    assert only_params(raw, ("labelSelector", "fieldSelector")) == (
        "labelSelector=a%3Db&fieldSelector=metadata.name%3Dx"
    )


def test_merged_lists_keep_every_item_and_no_single_resource_version() -> None:
    a = {"kind": "PodList", "metadata": {"resourceVersion": "5"}, "items": [{"n": 1}]}
    b = {"kind": "PodList", "metadata": {"resourceVersion": "7"}, "items": [{"n": 2}]}
    assert merge_lists([a, b]) == {
        "kind": "PodList",
        "metadata": {"resourceVersion": ""},
        "items": [{"n": 1}, {"n": 2}],
    }
