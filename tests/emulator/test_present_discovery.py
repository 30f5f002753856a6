"""Discovery documents against the real server's transcripts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.emulator import discovery
from tenant_proxy.emulator.types import ResourceType

REFERENCE = Path(__file__).resolve().parents[1] / "reference"


def transcript_body(name: str) -> Any:
    lines = (REFERENCE / name).read_text().splitlines()
    return json.loads("\n".join(line for line in lines if not line.startswith(("#", ">", "<"))))


@dataclass
class Table:
    """A registry stand-in: discovery only calls all()."""

    types: list[ResourceType] = field(default_factory=list)

    def all(self) -> list[ResourceType]:
        return list(self.types)


def types_from_resource_list(body: dict[str, Any]) -> list[ResourceType]:
    """The resource table that a recorded APIResourceList describes."""
    group, _, version = body["groupVersion"].rpartition("/")
    entries = body["resources"]
    subs: dict[str, list[str]] = {}
    for entry in entries:
        if "/" in entry["name"]:
            parent, sub = entry["name"].split("/")
            subs.setdefault(parent, []).append(sub)
    return [
        ResourceType(
            group=group,
            version=version,
            plural=e["name"],
            singular=e["kind"].lower(),
            kind=e["kind"],
            namespaced=e["namespaced"],
            verbs=tuple(e["verbs"]),
            short_names=tuple(e.get("shortNames", ())),
            categories=tuple(e.get("categories", ())),
            subresources=tuple(subs.get(e["name"], ())),
        )
        for e in entries
        if "/" not in e["name"]
    ]


def test_core_v1_resource_list_matches_the_real_server() -> None:
    expected = transcript_body("discovery-core-v1.txt")
    table = Table(types_from_resource_list(expected))
    assert discovery.resource_list(table, "", "v1") == expected


def test_storage_v1_resource_list_matches_the_real_server() -> None:
    expected = transcript_body("discovery-storage-v1.txt")
    table = Table(types_from_resource_list(expected))
    assert discovery.resource_list(table, "storage.k8s.io", "v1") == expected


def test_resource_list_order_does_not_depend_on_registration_order() -> None:
    expected = transcript_body("discovery-core-v1.txt")
    table = Table(list(reversed(types_from_resource_list(expected))))
    assert discovery.resource_list(table, "", "v1") == expected


def test_group_list_matches_the_real_server() -> None:
    expected = transcript_body("discovery-apis.txt")
    types = [
        ResourceType(g["name"], v["version"], "things", "thing", "Thing", False)
        for g in reversed(expected["groups"])
        for v in reversed(g["versions"])
    ]
    assert discovery.api_group_list(Table(types)) == expected


def test_core_versions_match_the_real_server() -> None:
    assert discovery.api_versions("127.0.0.1:26443") == transcript_body("discovery-api.txt")


def test_version_matches_the_real_server() -> None:
    assert discovery.version_info() == transcript_body("discovery-version.txt")


def crd_type(version: str, group: str = "example.com") -> ResourceType:
    return ResourceType(
        group,
        version,
        "widgets",
        "widget",
        "Widget",
        True,
        short_names=("wd",),
        categories=("all",),
        subresources=("status", "scale"),
    )


def test_custom_groups_follow_the_builtin_ones_with_kube_aware_version_order() -> None:
    table = Table(
        [
            crd_type("v1beta1"),
            crd_type("v1"),
            crd_type("v2alpha1"),
            ResourceType("apps", "v1", "deployments", "deployment", "Deployment", True),
            crd_type("v1", "aaa.example.com"),
        ]
    )
    groups = discovery.api_group_list(table)["groups"]
    assert [g["name"] for g in groups] == ["apps", "aaa.example.com", "example.com"]
    assert [v["version"] for v in groups[2]["versions"]] == ["v1", "v1beta1", "v2alpha1"]
    assert groups[2]["preferredVersion"] == {"groupVersion": "example.com/v1", "version": "v1"}


def test_api_group_document_names_its_versions() -> None:
    group = discovery.api_group(Table([crd_type("v1"), crd_type("v1beta1")]), "example.com")
    assert group is not None
    assert list(group) == ["kind", "apiVersion", "name", "versions", "preferredVersion"]
    assert group["kind"] == "APIGroup"


def test_unserved_group_and_version_are_none() -> None:
    table = Table([crd_type("v1")])
    assert discovery.api_group(table, "nope.example.com") is None
    assert discovery.resource_list(table, "example.com", "v9") is None


def test_custom_resource_entries_publish_singular_name_and_subresources() -> None:
    body = discovery.resource_list(Table([crd_type("v1")]), "example.com", "v1")
    assert body is not None
    assert body["apiVersion"] == "v1"
    main, scale, status = body["resources"]
    assert main["singularName"] == "widget"
    assert main["shortNames"] == ["wd"]
    assert main["storageVersionHash"] == discovery.storage_version_hash(crd_type("v1"))
    assert scale == {
        "name": "widgets/scale",
        "singularName": "",
        "namespaced": True,
        "group": "autoscaling",
        "version": "v1",
        "kind": "Scale",
        "verbs": ["get", "patch", "update"],
    }
    assert status["kind"] == "Widget"


@given(
    st.lists(
        st.sampled_from(["v1", "v2", "v1beta1", "v1beta2", "v1alpha1", "v3alpha2", "v10", "foo"]),
        min_size=1,
        unique=True,
    )
)
def test_ga_versions_are_always_preferred_over_prereleases(versions: list[str]) -> None:
    ordered = discovery.group_versions([crd_type(v) for v in versions])["example.com"]
    ranks = [discovery.version_rank(v)[0] for v in ordered]
    assert ranks == sorted(ranks)
    assert sorted(ordered) == sorted(versions)
