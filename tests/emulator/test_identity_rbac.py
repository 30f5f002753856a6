"""RBAC evaluation: bindings, aggregation, wildcards, subresources, names, non-resource URLs."""

from __future__ import annotations

from typing import Any

from dict_store import DictStore
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.emulator.bootstrap_policy import bootstrap_objects
from tenant_proxy.emulator.rbac import (
    RBAC_GROUP,
    Authorizer,
    rule_allows,
)
from tenant_proxy.emulator.types import ANONYMOUS, Attributes, KubeObject, UserInfo


def role_binding(
    name: str, namespace: str, role: str, subjects: list[dict[str, str]], kind: str = "ClusterRole"
) -> KubeObject:
    return {
        "kind": "RoleBinding",
        "apiVersion": f"{RBAC_GROUP}/v1",
        "metadata": {"name": name, "namespace": namespace},
        "subjects": subjects,
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": kind, "name": role},
    }


def group(name: str) -> dict[str, str]:
    return {"kind": "Group", "apiGroup": RBAC_GROUP, "name": name}


def world() -> DictStore:
    return DictStore(
        [
            *bootstrap_objects(),
            role_binding("tenant-a-admin", "team-a-dev", "admin", [group("tenant-a-devs")]),
        ]
    )


def res(verb: str, resource: str, namespace: str = "", **kw: Any) -> Attributes:
    return Attributes(
        verb=verb, path="", resource_request=True, resource=resource, namespace=namespace, **kw
    )


def url(path: str, verb: str = "get") -> Attributes:
    return Attributes(verb=verb, path=path, resource_request=False)


ALICE = UserInfo("alice", groups=("tenant-a-devs", "system:authenticated"))


def test_admin_rolebinding_allows_listing_pods_in_its_namespace_only() -> None:
    authz = Authorizer(world())
    assert authz.authorize(ALICE, res("list", "pods", "team-a-dev"))
    assert not authz.authorize(ALICE, res("list", "pods", "team-b-dev"))
    assert not authz.authorize(ALICE, res("list", "pods"))
    assert not authz.authorize(ALICE, res("list", "nodes"))


def test_allow_reason_names_binding_role_and_subject_like_the_real_server() -> None:
    decision = Authorizer(world()).decide(ALICE, res("list", "pods", "team-a-dev"))
    assert decision.reason == (
        'RBAC: allowed by RoleBinding "tenant-a-admin/team-a-dev" of ClusterRole "admin" '
        'to Group "tenant-a-devs"'
    )


def test_system_masters_may_do_anything_without_bindings() -> None:
    root = UserInfo("root", groups=("system:masters",))
    authz = Authorizer(DictStore([]))
    assert authz.authorize(root, res("delete", "nodes", name="n1"))
    assert authz.authorize(root, url("/metrics"))


def test_admin_aggregates_view_and_edit_rules() -> None:
    authz = Authorizer(world())
    assert authz.authorize(ALICE, res("get", "pods", "team-a-dev", subresource="log", name="p"))
    assert authz.authorize(ALICE, res("create", "deployments", "team-a-dev", api_group="apps"))
    assert authz.authorize(ALICE, res("create", "rolebindings", "team-a-dev", api_group=RBAC_GROUP))
    assert not authz.authorize(ALICE, res("create", "resourcequotas", "team-a-dev"))


def test_a_new_role_labelled_for_aggregation_extends_admin_at_once() -> None:
    store = world()
    authz = Authorizer(store)
    widgets = res("list", "widgets", "team-a-dev", api_group="example.com")
    assert not authz.authorize(ALICE, widgets)
    store.put(
        {
            "kind": "ClusterRole",
            "metadata": {
                "name": "widget-viewer",
                "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"},
            },
            "rules": [{"verbs": ["list"], "apiGroups": ["example.com"], "resources": ["widgets"]}],
        }
    )
    assert authz.authorize(ALICE, widgets)


def test_resource_names_limit_named_verbs_and_exclude_lists() -> None:
    store = world()
    store.put(
        {
            "kind": "Role",
            "metadata": {"name": "one-cm", "namespace": "ns"},
            "rules": [
                {
                    "verbs": ["get", "list"],
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": ["cfg"],
                }
            ],
        }
    )
    store.put(role_binding("b", "ns", "one-cm", [{"kind": "User", "name": "bob"}], kind="Role"))
    bob = UserInfo("bob", groups=("system:authenticated",))
    authz = Authorizer(store)
    assert authz.authorize(bob, res("get", "configmaps", "ns", name="cfg"))
    assert not authz.authorize(bob, res("get", "configmaps", "ns", name="other"))
    assert not authz.authorize(bob, res("list", "configmaps", "ns"))


def test_star_slash_subresource_matches_any_resource_with_that_subresource() -> None:
    rule = {"verbs": ["get"], "apiGroups": ["*"], "resources": ["*/scale"]}
    assert rule_allows(res("get", "deployments", "ns", subresource="scale", api_group="apps"), rule)
    assert not rule_allows(res("get", "deployments", "ns", api_group="apps"), rule)
    assert not rule_allows(res("get", "pods", "ns", subresource="status"), rule)


def test_service_account_subject_defaults_to_the_binding_namespace() -> None:
    store = world()
    store.put(role_binding("sa", "team-a-dev", "view", [{"kind": "ServiceAccount", "name": "ci"}]))
    authz = Authorizer(store)
    ci = UserInfo("system:serviceaccount:team-a-dev:ci", groups=("system:serviceaccounts",))
    other = UserInfo("system:serviceaccount:team-b-dev:ci", groups=("system:serviceaccounts",))
    assert authz.authorize(ci, res("list", "pods", "team-a-dev"))
    assert not authz.authorize(other, res("list", "pods", "team-a-dev"))
    decision = authz.decide(ci, res("list", "pods", "team-a-dev"))
    assert decision.reason.endswith('to ServiceAccount "ci/team-a-dev"')


def test_discovery_urls_are_open_to_authenticated_users_and_health_to_anyone() -> None:
    authz = Authorizer(world())
    user = UserInfo("u", groups=("system:authenticated",))
    assert authz.authorize(user, url("/apis/apps/v1"))
    assert authz.authorize(user, url("/version"))
    assert not authz.authorize(user, url("/metrics"))
    assert authz.authorize(ANONYMOUS, url("/healthz"))
    assert not authz.authorize(ANONYMOUS, url("/api"))
    assert not authz.authorize(ANONYMOUS, res("list", "namespaces"))


def test_binding_to_a_missing_role_denies_with_the_error_as_reason() -> None:
    store = DictStore([role_binding("x", "ns", "ghost", [{"kind": "User", "name": "bob"}])])
    decision = Authorizer(store).decide(UserInfo("bob"), res("get", "pods", "ns"))
    assert not decision.allowed
    assert decision.reason == f'RBAC: clusterrole.{RBAC_GROUP} "ghost" not found'


def test_self_subject_rules_resolve_cluster_rules_then_namespace_rules() -> None:
    resource_rules, non_resource = Authorizer(world()).rules_for(ALICE, "team-a-dev")
    assert resource_rules[0]["resources"] == ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]
    assert resource_rules[-1] == {
        "verbs": [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ],
        "apiGroups": [RBAC_GROUP],
        "resources": ["rolebindings", "roles"],
    }
    assert [r["nonResourceURLs"][0] for r in non_resource] == ["/healthz", "/api"]
    other_rules, _ = Authorizer(world()).rules_for(ALICE, "team-b-dev")
    assert other_rules == [resource_rules[0]]  # in a foreign namespace: system:basic-user only


names = st.text(alphabet="abcdefghijklmnop/-", min_size=1, max_size=12)


@given(verb=names, resource=names, group_name=names, namespace=names, name=names)
def test_wildcard_rule_allows_every_resource_request(
    verb: str, resource: str, group_name: str, namespace: str, name: str
) -> None:
    attrs = res(verb, resource, namespace, api_group=group_name, name=name)
    assert rule_allows(attrs, {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
    assert not rule_allows(attrs, {"verbs": ["*"], "nonResourceURLs": ["*"]})


@given(verb=names, path=names, extra_verb=names)
def test_adding_a_verb_to_a_rule_never_removes_access(
    verb: str, path: str, extra_verb: str
) -> None:
    attrs = url("/" + path, verb)
    rule = {"verbs": [verb], "nonResourceURLs": ["/" + path[:3] + "*"]}
    wider = {"verbs": [verb, extra_verb], "nonResourceURLs": rule["nonResourceURLs"]}
    assert rule_allows(attrs, rule)
    assert rule_allows(attrs, wider)


def test_rules_follow_binding_creation_order_not_store_order() -> None:
    store = world()
    bindings = [o for o in bootstrap_objects() if o["kind"] == "ClusterRoleBinding"]
    for rv, binding in enumerate(bindings, start=1):
        binding["metadata"]["resourceVersion"] = str(rv)
    # A store that lists by name, as the emulator's does.
    by_name = sorted(bindings, key=lambda b: b["metadata"]["name"])
    store.objects = {k: v for k, v in store.objects.items() if k[1] != "clusterrolebindings"}
    for binding in by_name:
        store.put(binding)
    _, non_resource = Authorizer(store).rules_for(ALICE, "team-a-dev")
    assert [r["nonResourceURLs"][0] for r in non_resource] == ["/healthz", "/api"]
