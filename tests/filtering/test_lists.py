"""Rewriting list answers: JSON lists, PartialObjectMetadataLists and Tables, fail closed."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.filtering.lists import NotAList, filter_response
from tenant_proxy.filtering.tables import filter_table
from tenant_proxy.kube.resources import NAMESPACES, PERSISTENT_VOLUMES, GroupResource
from tenant_proxy.tenancy.model import Members, Tenant, owns, view_for
from tenant_proxy.tenancy.rules import ClaimNamespaceRule

Body = Callable[[str], dict[str, Any]]
OWNER = {"team-a-dev": "team-a", "team-a-prod": "team-a", "team-b-dev": "team-b"}
TEAM_A = Tenant(
    "team-a",
    Members(groups=frozenset({"tenant-a-devs"})),
    rules={PERSISTENT_VOLUMES: ClaimNamespaceRule()},
)


@dataclass(frozen=True)
class Caller:
    user: str
    groups: tuple[str, ...] = ()


def keep_for(gr: GroupResource) -> Callable[[Mapping[str, Any]], bool]:
    view = view_for(Caller("alice", ("tenant-a-devs",)), [TEAM_A], OWNER)
    assert view is not None
    return lambda obj: owns(view, gr, obj)


def names(items: list[dict[str, Any]]) -> list[str]:
    return [i["metadata"]["name"] for i in items]


def row_names(table: dict[str, Any]) -> list[str]:
    return [r["cells"][0] for r in table["rows"]]


items = st.one_of(
    st.builds(lambda n: {"metadata": {"name": n}}, st.sampled_from("abcdef")),
    st.sampled_from([{}, {"metadata": None}, {"metadata": {"name": ""}}, "x", None, 3]),
)


@given(st.lists(items, max_size=12), st.frozensets(st.sampled_from("abcdef")))
def test_filter_list_keeps_exactly_the_accepted_items_in_order(
    listed: list[Any], allowed: frozenset[str]
) -> None:
    def keep(obj: Mapping[str, Any]) -> bool:
        return obj["metadata"]["name"] in allowed

    doc = {"kind": "ThingList", "metadata": {"resourceVersion": "9", "remainingItemCount": 4}}
    out, dropped = filter_response(orjson.dumps({**doc, "items": listed}), keep)
    result = orjson.loads(out)
    expected = [
        i
        for i in listed
        if isinstance(i, dict) and (i.get("metadata") or {}).get("name") in allowed
    ]
    assert result["items"] == expected
    assert dropped == len(listed) - len(expected)
    assert result["metadata"]["resourceVersion"] == "9"
    assert ("remainingItemCount" in result["metadata"]) == (dropped == 0)


def test_pv_list_keeps_only_volumes_claimed_in_the_tenants_namespaces(body: Body) -> None:
    out, dropped = filter_response(
        json.dumps(body("list-pv-json")).encode(), keep_for(PERSISTENT_VOLUMES)
    )
    result = orjson.loads(out)
    assert names(result["items"]) == ["pv-a-data"]
    assert dropped == 2
    assert result["kind"] == "PersistentVolumeList"
    assert result["metadata"] == {"resourceVersion": "254"}


def test_a_filtered_page_keeps_continue_and_drops_remaining_item_count(body: Body) -> None:
    page = body("list-namespaces-page1")
    out, dropped = filter_response(orjson.dumps(page), keep_for(NAMESPACES))
    result = orjson.loads(out)
    assert result["items"] == []
    assert dropped == 2
    assert result["metadata"]["continue"] == page["metadata"]["continue"]
    assert "remainingItemCount" not in result["metadata"]


def test_an_unfiltered_page_keeps_remaining_item_count(body: Body) -> None:
    page = body("list-namespaces-page1")
    out, dropped = filter_response(orjson.dumps(page), lambda obj: True)
    assert dropped == 0
    assert orjson.loads(out) == page


def test_partial_metadata_list_is_filtered_in_place(body: Body) -> None:
    out, _ = filter_response(orjson.dumps(body("list-namespaces-partial")), keep_for(NAMESPACES))
    result = orjson.loads(out)
    assert result["kind"] == "PartialObjectMetadataList"
    assert names(result["items"]) == ["team-a-dev", "team-a-prod"]


def test_whole_objects_can_be_answered_as_partial_metadata(body: Body) -> None:
    out, _ = filter_response(
        orjson.dumps(body("list-pv-json")), keep_for(PERSISTENT_VOLUMES), metadata_only=True
    )
    result = orjson.loads(out)
    assert result["kind"] == "PartialObjectMetadataList"
    assert result["apiVersion"] == "meta.k8s.io/v1"
    assert [i["kind"] for i in result["items"]] == ["PartialObjectMetadata"]
    assert "spec" not in result["items"][0]


@pytest.mark.parametrize(
    "raw", [b"not json", b"[]", b'{"kind":"Status","code":500}', b'{"items":{}}']
)
def test_what_is_not_a_list_is_refused_not_passed(raw: bytes) -> None:
    with pytest.raises(NotAList):
        filter_response(raw, lambda obj: True)


def test_table_rows_are_judged_by_their_object_metadata(body: Body) -> None:
    table = body("list-namespaces-table")
    result, dropped = filter_table(table, keep_for(NAMESPACES), strip_objects=False)
    assert row_names(result) == ["team-a-dev", "team-a-prod"]
    assert dropped == len(table["rows"]) - 2
    assert result["columnDefinitions"] == table["columnDefinitions"]
    assert result["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def test_rows_without_objects_are_dropped_fail_closed(body: Body) -> None:
    table = body("list-namespaces-table-include-none")
    result, dropped = filter_table(table, lambda obj: True, strip_objects=False)
    assert result["rows"] == []
    assert dropped == len(table["rows"])


def test_objects_asked_for_judgement_are_stripped_for_an_include_none_client(body: Body) -> None:
    table = body("list-namespaces-table")
    result, _ = filter_table(table, keep_for(NAMESPACES), strip_objects=True)
    assert [r["object"] for r in result["rows"]] == [None, None]
    assert row_names(result) == ["team-a-dev", "team-a-prod"]


def test_whole_object_rows_are_judged_on_spec_and_sent_as_metadata(body: Body) -> None:
    pvs = body("list-pv-json")["items"]
    table = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "254"},
        "columnDefinitions": [{"name": "Name"}],
        "rows": [{"cells": [pv["metadata"]["name"]], "object": pv} for pv in pvs],
    }
    out, dropped = filter_response(
        orjson.dumps(table), keep_for(PERSISTENT_VOLUMES), metadata_only=True
    )
    result = orjson.loads(out)
    assert row_names(result) == ["pv-a-data"]
    assert dropped == 2
    assert result["rows"][0]["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": pvs[0]["metadata"],
    }


def test_filter_response_dispatches_on_kind(body: Body) -> None:
    keep = keep_for(NAMESPACES)
    for name in ("list-namespaces-json", "list-namespaces-table", "list-namespaces-partial"):
        out, _ = filter_response(orjson.dumps(body(name)), keep)
        result = orjson.loads(out)
        listed = row_names(result) if result["kind"] == "Table" else names(result["items"])
        assert listed == ["team-a-dev", "team-a-prod"], name
