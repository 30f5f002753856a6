"""`Admission` (lookups by user and group) against `model.is_member` with the odd
identities real clusters have: a user named like a group and the other way round, the
ServiceAccount groups, and strings that only look like ServiceAccount users. The lookups keep
users and groups apart, as `is_member` does; one shared pool of names tries to mix them up."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from tenant_proxy.tenancy.model import Members, Tenant, is_member, tenant_namespaces, view_for
from tenant_proxy.tenancy.snapshot import Admission, TenancySnapshot

NAMES = [
    "devs",
    "alice",
    "system:authenticated",
    "system:serviceaccounts",
    "system:serviceaccounts:a-1",
    "system:serviceaccount:a-1:ci",
    "system:serviceaccount:a-1:ci:x",  # not a ServiceAccount: a name has no colon
    "system:serviceaccount::ci",  # nor without a namespace
    "system:serviceaccount:a-1",
]
NAMESPACES = ["a-1", "b-1"]


@dataclass(frozen=True)
class Caller:
    user: str
    groups: tuple[str, ...] = ()


def some(pool: list[str]) -> st.SearchStrategy[frozenset[str]]:
    return st.frozensets(st.sampled_from(pool), max_size=3)


members = st.builds(
    Members,
    users=some(NAMES),
    groups=some(NAMES),
    service_accounts=some(NAMES),
    all_service_accounts_of_own_namespaces=st.booleans(),
)
tenants = st.builds(
    Tenant,
    name=st.sampled_from(["t", "u"]),
    members=members,
    namespace_selector_value=st.sampled_from(["t", "u"]),
    namespaces=some(NAMESPACES),
    owners=members,
)
callers = st.builds(Caller, st.sampled_from(NAMES), st.lists(st.sampled_from(NAMES)).map(tuple))
owners = st.dictionaries(st.sampled_from(NAMESPACES), st.sampled_from(["t", "u"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(tenants, max_size=4), callers, owners)
def test_admission_keeps_users_and_groups_apart_as_is_member_does(
    tenant_list: list[Tenant], caller: Caller, owner: dict[str, str]
) -> None:
    own = tenant_namespaces(tenant_list, owner)
    expected = frozenset(
        i for i, t in enumerate(tenant_list) if is_member(caller, t, own[t.namespace_key])
    )
    assert Admission(tenant_list).positions(caller, own) == expected
    snapshot = TenancySnapshot(1, tuple(tenant_list), own)
    assert snapshot.view_for(caller) == view_for(caller, tenant_list, owner)


def test_a_user_named_like_a_group_is_not_in_it() -> None:
    team = Tenant("t", Members(groups=frozenset({"devs"})))
    snapshot = TenancySnapshot(1, (team,), tenant_namespaces([team], {}))
    assert snapshot.view_for(Caller("devs")) is None
    assert snapshot.view_for(Caller("x", ("devs",))) is not None
