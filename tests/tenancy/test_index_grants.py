"""RoleBinding grants (tenancy.rolebinding_namespaces): what a binding contributes, how grants
add up across bindings, and which changes of them can alter what a caller sees."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenant_proxy.kube.resources import NAMESPACES
from tenant_proxy.tenancy.grants import (
    Grant,
    GrantTable,
    Subject,
    binding_grants,
    grant_matters,
    granted_namespaces,
)
from tenant_proxy.tenancy.model import Members, Tenant, owns, tenant_namespaces, view_for
from tenant_proxy.tenancy.rules import GenericRule

ALICE = Subject("User", "alice")
DEVS = Subject("Group", "devs")


def binding(namespace: Any, *subjects: Any) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "b", "namespace": namespace, "annotations": {"x": "y"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": list(subjects),
    }


def test_a_binding_grants_its_namespace_to_each_user_group_and_service_account() -> None:
    obj = binding(
        "ns1",
        {"kind": "User", "name": "alice"},
        {"kind": "Group", "name": "devs"},
        {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"},
        {"kind": "ServiceAccount", "name": "local"},  # no namespace: the binding's own
    )
    assert binding_grants(obj) == {
        Grant(ALICE, "ns1"),
        Grant(DEVS, "ns1"),
        Grant(Subject("User", "system:serviceaccount:tools:ci"), "ns1"),
        Grant(Subject("User", "system:serviceaccount:ns1:local"), "ns1"),
    }


@pytest.mark.parametrize(
    "obj",
    [
        binding("ns1", {"kind": "User", "name": ""}, {"kind": "Group", "name": "  "}),
        binding("ns1", {"kind": "Robot", "name": "r"}, "not-a-subject", {"kind": "User"}),
        binding(None, {"kind": "User", "name": "alice"}),
        {"metadata": {"namespace": "ns1"}, "subjects": {"kind": "User", "name": "alice"}},
        {"metadata": {"namespace": "ns1"}},
    ],
)
def test_a_binding_naming_no_possible_caller_grants_nothing(obj: dict[str, Any]) -> None:
    assert binding_grants(obj) == frozenset()


def test_what_nobody_can_see_changes_no_grant() -> None:
    """A re-apply, reordered subjects, other annotations or roleRef: the same grants."""
    one = binding("ns1", {"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"})
    other = binding("ns1", {"kind": "Group", "name": "devs"}, {"kind": "User", "name": "alice"})
    other["metadata"]["annotations"] = {"changed": "yes"}
    other["roleRef"]["name"] = "edit"
    assert binding_grants(one) == binding_grants(other)


def test_a_grant_two_bindings_give_lasts_until_both_are_gone() -> None:
    table = GrantTable()
    both = frozenset({Grant(ALICE, "ns1")})
    assert table.replace(frozenset(), both) == both
    assert table.replace(frozenset(), both) == frozenset()
    assert granted_namespaces(table.frozen(), "alice", ()) == {"ns1"}
    assert table.replace(both, frozenset()) == frozenset()
    assert granted_namespaces(table.frozen(), "alice", ()) == {"ns1"}
    assert table.replace(both, frozenset()) == both
    assert granted_namespaces(table.frozen(), "alice", ()) == frozenset()


def test_a_caller_gets_the_namespaces_of_its_name_and_of_each_of_its_groups() -> None:
    table = GrantTable()
    table.replace(frozenset(), frozenset({Grant(ALICE, "a"), Grant(DEVS, "d")}))
    table.replace(frozenset(), frozenset({Grant(Subject("Group", "alice"), "g")}))
    assert granted_namespaces(table.frozen(), "alice", ("devs",)) == {"a", "d"}
    assert granted_namespaces(table.frozen(), "bob", ("devs", "alice")) == {"d", "g"}
    assert granted_namespaces(table.frozen(), "devs", ()) == frozenset()  # a user is not a group


SUBJECTS = [ALICE, DEVS, Subject("User", "bob"), Subject("Group", "ops")]
grants = st.frozensets(
    st.builds(Grant, st.sampled_from(SUBJECTS), st.sampled_from(["ns1", "ns2"])), max_size=3
)


@given(st.lists(st.tuples(st.sampled_from(["b1", "b2", "b3"]), grants), max_size=12))
def test_the_table_always_equals_the_union_of_the_bindings_it_was_given(
    changes: list[tuple[str, frozenset[Grant]]],
) -> None:
    table, bindings = GrantTable(), dict[str, frozenset[Grant]]()
    for key, new in changes:
        present = frozenset().union(*bindings.values())
        flipped = table.replace(bindings.get(key, frozenset()), new)
        bindings[key] = new
        now = frozenset().union(*bindings.values())
        assert flipped == present ^ now
        for user, groups in (("alice", ()), ("bob", ("devs",)), ("carol", ("ops", "devs"))):
            want = {
                g.namespace
                for g in now
                if g.subject == Subject("User", user)
                or (g.subject.kind == "Group" and g.subject.name in groups)
            }
            assert granted_namespaces(table.frozen(), user, groups) == want


# -- which grants matter ------------------------------------------------------------------------

SA_NS1 = "system:serviceaccount:ns1:deployer"


def tenant(name: str, members: Members, *namespaces: str) -> Tenant:
    return Tenant(name=name, members=members, namespaces=frozenset(namespaces))


def matters(grant: Grant, tenants: list[Tenant]) -> bool:
    return grant_matters(grant, tenants, tenant_namespaces(tenants, {}))


def test_a_grant_to_a_group_of_the_tenant_owning_the_namespace_changes_nothing() -> None:
    tenants = [tenant("a", Members(groups=frozenset({"devs"})), "ns1")]
    assert not matters(Grant(DEVS, "ns1"), tenants)
    assert matters(Grant(DEVS, "ns2"), tenants)
    assert matters(Grant(Subject("Group", "ops"), "ns1"), tenants)


def test_a_grant_to_a_user_admitted_by_name_to_the_owning_tenant_changes_nothing() -> None:
    tenants = [tenant("a", Members(users=frozenset({"alice"})), "ns1")]
    assert not matters(Grant(ALICE, "ns1"), tenants)
    assert matters(Grant(ALICE, "ns2"), tenants)
    # bob may be in a group that some tenant admits: what he sees is unknown.
    assert matters(Grant(Subject("User", "bob"), "ns1"), tenants)


def test_service_accounts_of_a_namespace_already_theirs_change_nothing() -> None:
    own_sas = Members(all_service_accounts_of_own_namespaces=True)
    tenants = [tenant("a", own_sas, "ns1", "ns3")]
    assert not matters(Grant(Subject("User", SA_NS1), "ns1"), tenants)
    assert not matters(Grant(Subject("User", SA_NS1), "ns3"), tenants)
    assert matters(Grant(Subject("User", "system:serviceaccount:ns2:x"), "ns1"), tenants)


def test_a_users_groups_are_not_assumed() -> None:
    tenants = [
        tenant("a", Members(users=frozenset({"alice"})), "ns2"),
        tenant("devs", Members(groups=frozenset({"devs"})), "ns1"),
    ]
    assert matters(Grant(ALICE, "ns1"), tenants)  # alice may not be in devs


def test_a_group_only_admitted_with_other_groups_is_not_assumed() -> None:
    tenants = [tenant("a", Members(users=frozenset({"alice"})), "ns1")]
    assert matters(Grant(Subject("Group", "alice"), "ns1"), tenants)


def test_a_tenant_showing_namespaces_by_another_rule_does_not_count() -> None:
    by_name_only = GenericRule(names=frozenset({"shared"}))
    tenants = [
        Tenant(
            name="a",
            members=Members(groups=frozenset({"devs"})),
            namespaces=frozenset({"ns1"}),
            rules={NAMESPACES: by_name_only},
        )
    ]
    assert matters(Grant(DEVS, "ns1"), tenants)


@dataclass(frozen=True)
class Caller:
    user: str
    groups: tuple[str, ...]


NAMESPACE_NAMES = ["ns1", "ns2", "ns3"]
USERS = ["alice", "bob", SA_NS1, "system:serviceaccount:ns2:x"]
GROUP_NAMES = ["devs", "ops"]
members = st.builds(
    Members,
    users=st.frozensets(st.sampled_from(USERS), max_size=2),
    groups=st.frozensets(st.sampled_from(GROUP_NAMES), max_size=1),
    all_service_accounts_of_own_namespaces=st.booleans(),
)


@st.composite
def tenant_lists(draw: st.DrawFn) -> list[Tenant]:
    count = draw(st.integers(0, 3))
    return [
        Tenant(
            name=f"t{i}",
            members=draw(members),
            namespaces=draw(st.frozensets(st.sampled_from(NAMESPACE_NAMES), max_size=2)),
            rules=draw(st.sampled_from([{}, {NAMESPACES: GenericRule(names=frozenset({"ns3"}))}])),
        )
        for i in range(count)
    ]


subjects = st.one_of(
    st.builds(Subject, st.just("User"), st.sampled_from(USERS)),
    st.builds(Subject, st.just("Group"), st.sampled_from(GROUP_NAMES)),
)


@settings(max_examples=400)
@given(
    tenant_lists(),
    st.builds(Grant, subjects, st.sampled_from(NAMESPACE_NAMES)),
    st.frozensets(st.sampled_from(NAMESPACE_NAMES), max_size=2),
    st.sampled_from(USERS),
    st.frozensets(st.sampled_from(GROUP_NAMES)),
)
def test_a_grant_that_does_not_matter_changes_nothing_any_caller_it_names_sees(
    tenants: list[Tenant],
    grant: Grant,
    other_grants: frozenset[str],
    user: str,
    groups: frozenset[str],
) -> None:
    if grant.subject.kind == "User":
        caller = Caller(grant.subject.name, tuple(sorted(groups)))
    else:
        caller = Caller(user, tuple(sorted(groups | {grant.subject.name})))
    without = view_for(caller, tenants, {}, other_grants)
    with_it = view_for(caller, tenants, {}, other_grants | {grant.namespace})
    if grant_matters(grant, tenants, tenant_namespaces(tenants, {})):
        return
    assert (without is None) == (with_it is None)
    if without is None or with_it is None:
        return
    assert without.namespaces == with_it.namespaces
    for name in [*NAMESPACE_NAMES, "shared"]:
        obj = {"metadata": {"name": name}}
        assert owns(without, NAMESPACES, obj) == owns(with_it, NAMESPACES, obj)
