"""Access reviews amended for what the proxy serves; whoami answered from the caller."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.identity import Identity
from tenant_proxy.kube.resources import GroupResource
from tenant_proxy.reviews import (
    REASON,
    SELF_SERVICE_REASON,
    accepts_json,
    amend_access_review,
    amend_rules_review,
    self_subject_review,
)
from tenant_proxy.tenancy.self_service import OwnerRights

NODES = GroupResource("", "nodes")


def access(verb: str, resource: str, group: str = "", **extra: str) -> dict[str, Any]:
    attrs = {"verb": verb, "resource": resource, "group": group, **extra}
    return {
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attrs},
        "status": {"allowed": False},
    }


def only_nodes(gr: GroupResource) -> bool:
    return gr == NODES


def test_denied_read_of_a_filtered_resource_becomes_allowed() -> None:
    for verb in ("get", "list", "watch"):
        out = amend_access_review(access(verb, "nodes"), only_nodes)
        assert out["status"] == {"allowed": True, "reason": REASON}


def test_kubectl_default_namespace_does_not_matter_for_cluster_scoped_kinds() -> None:
    out = amend_access_review(access("list", "nodes", namespace="default"), only_nodes)
    assert out["status"]["allowed"] is True


@given(verb=st.sampled_from(["create", "update", "patch", "delete", "deletecollection", "*"]))
def test_writes_are_never_amended(verb: str) -> None:
    out = amend_access_review(access(verb, "nodes"), only_nodes)
    assert out["status"] == {"allowed": False}


def test_unfiltered_resources_and_subresources_keep_the_api_servers_answer() -> None:
    assert amend_access_review(access("list", "pods"), only_nodes)["status"]["allowed"] is False
    sub = access("get", "nodes", subresource="proxy")
    assert amend_access_review(sub, only_nodes)["status"]["allowed"] is False


def test_an_allowed_answer_is_kept_as_the_api_server_gave_it() -> None:
    review = access("list", "nodes")
    review["status"] = {"allowed": True, "reason": "RBAC: allowed by ClusterRoleBinding"}
    assert amend_access_review(review, only_nodes)["status"] == review["status"]


def test_rules_review_gains_read_rules_for_each_filtered_resource() -> None:
    upstream = {
        "status": {
            "resourceRules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}],
            "incomplete": False,
        }
    }
    out = amend_rules_review(upstream, [NODES, GroupResource("storage.k8s.io", "storageclasses")])
    rules = out["status"]["resourceRules"]
    assert rules[0] == upstream["status"]["resourceRules"][0]
    assert {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["nodes"]} in rules
    assert out["status"]["incomplete"] is False


OWNER = OwnerRights(
    creatable=lambda name: name == "" or name.startswith("team-a-"),
    deletable=frozenset({"team-a-dev"}),
)
NO_RIGHTS = (None, OwnerRights())


@pytest.mark.parametrize(
    ("attrs", "allowed"),
    [
        ({"verb": "create", "resource": "namespaces"}, True),
        ({"verb": "create", "resource": "namespaces", "name": "team-a-new"}, True),
        ({"verb": "create", "resource": "namespaces", "name": "team-b-new"}, False),
        ({"verb": "delete", "resource": "namespaces", "name": "team-a-dev"}, True),
        ({"verb": "delete", "resource": "namespaces", "name": "team-a-prod"}, False),
        # Any namespace at all is not what the proxy deletes for an owner.
        ({"verb": "delete", "resource": "namespaces"}, False),
        ({"verb": "update", "resource": "namespaces", "name": "team-a-dev"}, False),
        ({"verb": "deletecollection", "resource": "namespaces"}, False),
        ({"verb": "create", "resource": "namespaces", "subresource": "finalize"}, False),
        (
            {"verb": "delete", "resource": "namespaces", "name": "team-a-dev", "group": "x.io"},
            False,
        ),
        ({"verb": "create", "resource": "pods", "namespace": "team-a-dev"}, False),
    ],
)
def test_owners_namespace_creates_and_deletes_are_allowed_as_the_proxy_makes_them(
    attrs: dict[str, str], allowed: bool
) -> None:
    review = access(**attrs)
    out = amend_access_review(review, only_nodes, self_service=OWNER)
    expected = {"allowed": True, "reason": SELF_SERVICE_REASON} if allowed else {"allowed": False}
    assert out["status"] == expected
    for rights in NO_RIGHTS:  # a caller who owns nothing keeps the API server's answer
        kept = (
            amend_access_review(review, only_nodes)
            if rights is None
            else (amend_access_review(review, only_nodes, self_service=rights))
        )
        assert kept["status"] == {"allowed": False}


def test_rules_review_gains_an_owners_namespace_create_and_its_deletes() -> None:
    rules = amend_rules_review({"status": {}}, [NODES], OWNER)["status"]["resourceRules"]
    assert {"verbs": ["create"], "apiGroups": [""], "resources": ["namespaces"]} in rules
    delete = {
        "verbs": ["delete"],
        "apiGroups": [""],
        "resources": ["namespaces"],
        "resourceNames": ["team-a-dev"],
    }
    assert delete in rules
    plain = amend_rules_review({"status": {}}, [NODES])["status"]["resourceRules"]
    assert plain == [{"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["nodes"]}]


def test_whoami_reports_the_authenticated_caller() -> None:
    who = Identity(user="alice", groups=("devs",), extra={"scopes": ("a",)}, uid="u1")
    review = self_subject_review(who, "v1")
    assert review["apiVersion"] == "authentication.k8s.io/v1"
    assert review["status"]["userInfo"] == {
        "username": "alice",
        "uid": "u1",
        "groups": ["devs", "system:authenticated"],
        "extra": {"scopes": ["a"]},
    }


def test_the_get_of_an_owned_nodes_lease_is_allowed_and_nothing_else_about_leases() -> None:
    def owns(name: str) -> bool:
        return name == "node-a1"

    def lease(verb: str, name: str = "node-a1", namespace: str = "kube-node-lease") -> Any:
        attrs = {"namespace": namespace, **({"name": name} if name else {})}
        review = access(verb, "leases", "coordination.k8s.io", **attrs)
        return amend_access_review(review, only_nodes, owns)["status"]["allowed"]

    assert lease("get") is True
    assert lease("get", name="node-b1") is False
    assert lease("get", name="") is False
    assert lease("get", namespace="default") is False
    assert lease("list") is False
    assert lease("update") is False


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "",
        "application/json",
        "application/vnd.kubernetes.protobuf,application/json",  # kubectl ≥ 1.3x
        "application/vnd.kubernetes.protobuf, */*",
        "application/*;q=0.5",
        "APPLICATION/JSON; charset=utf-8",
    ],
)
def test_clients_taking_json_get_the_amended_json(accept: str | None) -> None:
    assert accepts_json(accept)


@pytest.mark.parametrize(
    "accept",
    [
        "application/vnd.kubernetes.protobuf",
        "application/yaml",
        "application/json;q=0",
        "application/json;as=Table;v=v1;g=meta.k8s.io",
        "application/vnd.kubernetes.protobuf, application/json;q=0.0",
    ],
)
def test_clients_refusing_json_are_not_answered_json(accept: str) -> None:
    assert not accepts_json(accept)
