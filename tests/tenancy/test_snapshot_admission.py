"""A snapshot finds a caller's tenants by lookups (`Admission`), shared across generations with
the same tenants: it must admit exactly whom `model.is_member` admits, and give exactly the
view `model.view_for` computes from scratch, generation after generation."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from tenant_proxy.tenancy.model import (
    Members,
    Tenant,
    TenantNamespaces,
    is_member,
    tenant_namespaces,
    view_for,
)
from tenant_proxy.tenancy.snapshot import Admission, TenancySnapshot

USERS = ["alice", "bob", "system:serviceaccount:a-1:ci", "system:serviceaccount:b-1:ci"]
GROUPS = ["devs", "ops", "all"]
NAMESPACES = ["a-1", "a-2", "b-1", "c-1"]
LABELS = ["a", "b", "c"]


@dataclass(frozen=True)
class Caller:
    user: str
    groups: tuple[str, ...] = ()


def names(pool: list[str]) -> st.SearchStrategy[frozenset[str]]:
    return st.frozensets(st.sampled_from(pool), max_size=2)


members = st.builds(
    Members,
    users=names(USERS[:2]),
    groups=names(GROUPS),
    service_accounts=names(USERS[2:]),
    all_service_accounts_of_own_namespaces=st.booleans(),
)
tenants = st.builds(
    Tenant,
    # Names repeat: the config, the CR and Capsule may each hold a tenant of one name.
    name=st.sampled_from(["team-a", "team-b"]),
    members=members,
    namespace_selector_value=st.sampled_from(LABELS),
    namespaces=names(NAMESPACES),
    owners=members,
)
callers = st.builds(
    Caller, st.sampled_from([*USERS, "carol"]), st.lists(st.sampled_from(GROUPS)).map(tuple)
)
# Each generation: which tenant label value each namespace carries.
owners = st.dictionaries(st.sampled_from(NAMESPACES), st.sampled_from(LABELS))


def admitted(caller: Caller, tenant_list: list[Tenant], own: TenantNamespaces) -> frozenset[int]:
    return frozenset(
        i for i, t in enumerate(tenant_list) if is_member(caller, t, own[t.namespace_key])
    )


@settings(max_examples=300)
@given(st.lists(tenants, max_size=5), callers, owners)
def test_admission_admits_exactly_whom_is_member_admits(
    tenant_list: list[Tenant], caller: Caller, owner: dict[str, str]
) -> None:
    own = tenant_namespaces(tenant_list, owner)
    assert Admission(tenant_list).positions(caller, own) == admitted(caller, tenant_list, own)


@settings(max_examples=200)
@given(
    st.lists(tenants, min_size=1, max_size=4),
    st.lists(owners, min_size=1, max_size=4),
    st.lists(callers, min_size=1, max_size=4),
)
def test_views_across_generations_are_those_computed_from_scratch(
    tenant_list: list[Tenant], generations: list[dict[str, str]], caller_list: list[Caller]
) -> None:
    admission = None
    for generation, owner in enumerate(generations):
        snapshot = TenancySnapshot(
            generation, tuple(tenant_list), tenant_namespaces(tenant_list, owner), None, admission
        )
        assert snapshot.admission is not None
        if admission is not None:
            assert snapshot.admission is admission  # the same tenants: shared
        admission = snapshot.admission
        for caller in caller_list:
            assert snapshot.view_for(caller) == view_for(caller, tenant_list, owner)


def test_an_admission_for_other_tenants_is_not_taken_over() -> None:
    alice = Tenant("team-a", Members(users=frozenset({"alice"})))
    bob = Tenant("team-b", Members(users=frozenset({"bob"})))
    first = TenancySnapshot(1, (alice,), tenant_namespaces([alice], {}))
    second = TenancySnapshot(2, (bob,), tenant_namespaces([bob], {}), None, first.admission)
    assert second.admission is not first.admission
    assert second.view_for(Caller("alice")) is None
    view = second.view_for(Caller("bob"))
    assert view is not None
    assert view.tenants == frozenset({"team-b"})
