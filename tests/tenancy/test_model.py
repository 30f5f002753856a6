"""Tenancy model: membership, the caller's view, and owns() against an independent oracle."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenant_proxy.identity import Identity
from tenant_proxy.kube.labels import Op, Requirement, Selector, from_label_selector
from tenant_proxy.kube.resources import CRDS, NAMESPACES, NODES, PERSISTENT_VOLUMES, GroupResource
from tenant_proxy.tenancy.model import (
    Members,
    NamespaceOptions,
    Tenant,
    caller_groups,
    is_member,
    owns,
    service_account_namespace,
    view_for,
)
from tenant_proxy.tenancy.ownership import label_test
from tenant_proxy.tenancy.rules import (
    ApiGroupRule,
    ClaimNamespaceRule,
    ClassRule,
    GenericRule,
    NodeRule,
    Rule,
)

STORAGECLASSES = GroupResource("storage.k8s.io", "storageclasses")
WIDGETS = GroupResource("example.com", "widgets")
TENANTS = ["t1", "t2", "t3"]
NAMESPACE_NAMES = ["ns1", "ns2", "ns3", "ns4", "kube-system"]
USERS = ["alice", "bob", "system:serviceaccount:ns1:deployer", "system:serviceaccount:ns4:x"]
GROUPS = ["devs", "ops", "system:authenticated"]
LABEL_KEYS = ["pool", "tier", "tenant"]
LABEL_VALUES = ["t1", "t2", "a", "b"]
NAMES = ["gold", "silver", "gold-fast", "xgold", "w1"]
API_GROUPS = ["a.example.com", "b.example.com"]


@dataclass(frozen=True)
class Caller:
    user: str
    groups: tuple[str, ...] = ()


@dataclass
class World:
    """Tenants as plain data for the oracle, and the same as model objects."""

    users: dict[str, set[str]]
    groups: dict[str, set[str]]
    sa_own: dict[str, bool]
    explicit: dict[str, set[str]]
    owner: dict[str, str]
    node_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    pv_label_key: dict[str, str | None] = field(default_factory=dict)
    class_names: dict[str, set[str]] = field(default_factory=dict)
    class_regex: dict[str, str | None] = field(default_factory=dict)
    class_labels: dict[str, dict[str, str] | None] = field(default_factory=dict)
    crd_groups: dict[str, set[str]] = field(default_factory=dict)
    widget_labels: dict[str, dict[str, str] | None] = field(default_factory=dict)
    widget_names: dict[str, set[str]] = field(default_factory=dict)


small_labels = st.dictionaries(
    st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES), max_size=2
)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    names = draw(st.lists(st.sampled_from(TENANTS), unique=True, max_size=3))
    world = World(
        users={t: set(draw(st.sets(st.sampled_from(USERS), max_size=2))) for t in names},
        groups={t: set(draw(st.sets(st.sampled_from(GROUPS), max_size=1))) for t in names},
        sa_own={t: draw(st.booleans()) for t in names},
        explicit={
            t: set(draw(st.sets(st.sampled_from(NAMESPACE_NAMES), max_size=1))) for t in names
        },
        owner=draw(st.dictionaries(st.sampled_from(NAMESPACE_NAMES), st.sampled_from(TENANTS))),
    )
    for t in names:
        if draw(st.booleans()):
            world.node_labels[t] = draw(small_labels)
        if draw(st.booleans()):
            world.pv_label_key[t] = draw(st.sampled_from([None, "tenant"]))
        if draw(st.booleans()):
            world.class_names[t] = set(draw(st.sets(st.sampled_from(NAMES), max_size=2)))
            world.class_regex[t] = draw(st.sampled_from([None, "gold.*", "s.l"]))
            world.class_labels[t] = draw(st.one_of(st.none(), small_labels))
        if draw(st.booleans()):
            world.crd_groups[t] = set(draw(st.sets(st.sampled_from(API_GROUPS))))
        if draw(st.booleans()):
            world.widget_labels[t] = draw(st.one_of(st.none(), small_labels))
            world.widget_names[t] = set(draw(st.sets(st.sampled_from(NAMES), max_size=1)))
    return world


def model_tenants(world: World) -> list[Tenant]:
    def selector(labels: dict[str, str] | None) -> Any:
        return None if labels is None else from_label_selector({"matchLabels": labels})

    tenants = []
    for t in world.users:
        rules: dict[GroupResource, Rule] = {}
        if t in world.node_labels:
            rules[NODES] = NodeRule(selector(world.node_labels[t]))
        if t in world.pv_label_key:
            rules[PERSISTENT_VOLUMES] = ClaimNamespaceRule(label_key=world.pv_label_key[t])
        if t in world.class_names:
            rules[STORAGECLASSES] = ClassRule(
                frozenset(world.class_names[t]),
                world.class_regex[t],
                selector(world.class_labels[t]),
            )
        if t in world.crd_groups:
            rules[CRDS] = ApiGroupRule(frozenset(world.crd_groups[t]))
        if t in world.widget_labels:
            rules[WIDGETS] = GenericRule(
                selector(world.widget_labels[t]),
                frozenset(world.widget_names[t]),
                field_path="spec.namespace",
            )
        members = Members(
            users=frozenset(u for u in world.users[t] if not u.startswith("system:")),
            service_accounts=frozenset(u for u in world.users[t] if u.startswith("system:")),
            groups=frozenset(world.groups[t]),
            all_service_accounts_of_own_namespaces=world.sa_own[t],
        )
        tenants.append(Tenant(t, members, namespaces=frozenset(world.explicit[t]), rules=rules))
    return tenants


# --- the oracle: written from the issue's wording, not from the model ------------------------


def oracle_namespaces(world: World, t: str) -> set[str]:
    return world.explicit[t] | {ns for ns, owner in world.owner.items() if owner == t}


def oracle_member_tenants(world: World, caller: Caller) -> list[str]:
    # kube-apiserver puts every authenticated caller in system:authenticated.
    groups = set(caller.groups)
    if caller.user != "system:anonymous":
        groups.add("system:authenticated")
    out = []
    for t in world.users:
        sa_ns = (
            caller.user.split(":")[2] if caller.user.startswith("system:serviceaccount:") else None
        )
        if (
            caller.user in world.users[t]
            or groups & world.groups[t]
            or (world.sa_own[t] and sa_ns in oracle_namespaces(world, t))
        ):
            out.append(t)
    return out


def labels_match(want: dict[str, str] | None, have: dict[str, str]) -> bool:
    return want is not None and all(have.get(k) == v for k, v in want.items())


def oracle_visible(world: World, caller: Caller, gr: GroupResource, obj: dict[str, Any]) -> bool:
    meta = obj["metadata"]
    name, labels = meta["name"], meta.get("labels") or {}
    spec = obj.get("spec") or {}
    mine = oracle_member_tenants(world, caller)
    for t in mine:
        own = oracle_namespaces(world, t)
        if gr == NAMESPACES and name in own:
            return True
        if gr == NODES and t in world.node_labels and labels_match(world.node_labels[t], labels):
            return True
        if gr == PERSISTENT_VOLUMES and t in world.pv_label_key:
            claim = (spec.get("claimRef") or {}).get("namespace")
            key = world.pv_label_key[t]
            if claim in own or (key is not None and labels.get(key) == t):
                return True
        if gr == STORAGECLASSES and t in world.class_names:
            regex = world.class_regex[t]
            if (
                name in world.class_names[t]
                or (regex is not None and re.fullmatch(regex, name))
                or labels_match(world.class_labels[t], labels)
            ):
                return True
        if gr == CRDS and t in world.crd_groups and spec.get("group") in world.crd_groups[t]:
            return True
        if gr == WIDGETS and t in world.widget_labels:
            if labels_match(world.widget_labels[t], labels) or name in world.widget_names[t]:
                return True
            if spec.get("namespace") in own:
                return True
    return False


callers = st.builds(
    Caller, st.sampled_from(USERS), st.lists(st.sampled_from(GROUPS), max_size=2).map(tuple)
)


@st.composite
def objects(draw: st.DrawFn, gr: GroupResource) -> dict[str, Any]:
    name = draw(st.sampled_from(NAMESPACE_NAMES if gr == NAMESPACES else NAMES))
    meta: dict[str, Any] = {"name": name}
    if draw(st.booleans()):
        meta["labels"] = draw(small_labels)
    spec: dict[str, Any] = {}
    if gr == PERSISTENT_VOLUMES and draw(st.booleans()):
        spec["claimRef"] = {"namespace": draw(st.sampled_from(NAMESPACE_NAMES)), "name": "data"}
    if gr == CRDS:
        spec["group"] = draw(st.sampled_from(API_GROUPS))
    if gr == WIDGETS and draw(st.booleans()):
        spec["namespace"] = draw(st.sampled_from(NAMESPACE_NAMES))
    return {"metadata": meta, "spec": spec}


@pytest.mark.parametrize(
    "gr", [NAMESPACES, NODES, PERSISTENT_VOLUMES, STORAGECLASSES, CRDS, WIDGETS]
)
@settings(max_examples=100)
@given(data=st.data())
def test_owns_agrees_with_the_oracle_for_every_rule_type(
    gr: GroupResource, data: st.DataObject
) -> None:
    world, caller = data.draw(worlds()), data.draw(callers)
    objs = data.draw(st.lists(objects(gr), min_size=1, max_size=6))
    view = view_for(caller, model_tenants(world), world.owner)
    for obj in objs:
        expected = oracle_visible(world, caller, gr, obj)
        assert (view is not None and owns(view, gr, obj)) == expected


@given(worlds(), callers)
def test_view_is_none_exactly_when_the_caller_is_in_no_tenant(world: World, caller: Caller) -> None:
    view = view_for(caller, model_tenants(world), world.owner)
    mine = oracle_member_tenants(world, caller)
    assert (view is None) == (not mine)
    if view is not None:
        assert view.tenants == frozenset(mine)
        assert view.namespaces == frozenset().union(*(oracle_namespaces(world, t) for t in mine))


# --- examples --------------------------------------------------------------------------------

ALICE = Caller("alice", ("tenant-a-devs",))
TEAM_A = Tenant(
    "team-a",
    Members(groups=frozenset({"tenant-a-devs"})),
    rules={NODES: NodeRule(from_label_selector({"matchLabels": {"pool": "team-a"}}))},
)
TEAM_B = Tenant("team-b", Members(users=frozenset({"bob"})))
OWNER = {"team-a-dev": "team-a", "team-a-prod": "team-a", "team-b-dev": "team-b"}


def ns(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


def test_tenant_sees_its_own_namespaces_and_not_another_tenants() -> None:
    view = view_for(ALICE, [TEAM_A, TEAM_B], OWNER)
    assert view is not None
    assert owns(view, NAMESPACES, ns("team-a-dev"))
    assert not owns(view, NAMESPACES, ns("team-b-dev"))


def test_rolebinding_namespaces_widen_only_the_namespaces_list() -> None:
    view = view_for(ALICE, [TEAM_A], OWNER, rolebinding_namespaces=frozenset({"shared"}))
    assert view is not None
    assert owns(view, NAMESPACES, ns("shared"))
    assert "shared" in view.namespaces
    assert not owns(
        view,
        PERSISTENT_VOLUMES,
        {"metadata": {"name": "pv"}, "spec": {"claimRef": {"namespace": "shared"}}},
    )


def test_caller_in_two_tenants_sees_the_union() -> None:
    both = Caller("bob", ("tenant-a-devs",))
    view = view_for(both, [TEAM_A, TEAM_B], OWNER)
    assert view is not None
    assert view.tenants == {"team-a", "team-b"}
    assert all(owns(view, NAMESPACES, ns(n)) for n in OWNER)


def test_resource_without_rule_is_not_filtered() -> None:
    view = view_for(ALICE, [TEAM_A], OWNER)
    assert view is not None
    assert view.filters(NODES)
    assert view.filters(NAMESPACES)
    assert not view.filters(PERSISTENT_VOLUMES)


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"metadata": None},
        {"metadata": {"labels": {"pool": "team-a"}}},
        {"metadata": {"name": "", "labels": {"pool": "team-a"}}},
        {"metadata": {"name": 5, "labels": {"pool": "team-a"}}},
        {"metadata": {"name": "n", "labels": ["pool"]}},
        {"metadata": {"name": "n", "labels": {"pool": 1}}},
        {"metadata": "n"},
    ],
)
def test_unreadable_metadata_is_never_owned(obj: dict[str, Any]) -> None:
    view = view_for(ALICE, [TEAM_A], OWNER)
    assert view is not None
    assert not owns(view, NODES, obj)


def test_claim_rule_reads_a_string_field_only() -> None:
    tenant = Tenant(
        "team-a",
        Members(users=frozenset({"alice"})),
        rules={PERSISTENT_VOLUMES: ClaimNamespaceRule()},
    )
    view = view_for(ALICE, [tenant], OWNER)
    assert view is not None
    assert view.needs_full_object(PERSISTENT_VOLUMES)
    pv = {"metadata": {"name": "pv"}, "spec": {"claimRef": {"namespace": ["team-a-dev"]}}}
    assert not owns(view, PERSISTENT_VOLUMES, pv)
    pv["spec"]["claimRef"]["namespace"] = "team-a-dev"
    assert owns(view, PERSISTENT_VOLUMES, pv)


def test_class_regex_must_match_the_whole_name() -> None:
    tenant = Tenant(
        "t", Members(users=frozenset({"alice"})), rules={STORAGECLASSES: ClassRule(regex="gold")}
    )
    view = view_for(ALICE, [tenant], {})
    assert view is not None
    assert owns(view, STORAGECLASSES, ns("gold"))
    assert not owns(view, STORAGECLASSES, ns("not-gold-at-all"))


def test_a_bad_class_regex_is_refused_when_the_rule_is_made() -> None:
    with pytest.raises(ValueError, match="regex"):
        ClassRule(regex="gold(")


def test_builtin_resources_refuse_a_rule_of_the_wrong_kind() -> None:
    with pytest.raises(ValueError, match="NodeRule"):
        Tenant("t", rules={NODES: ApiGroupRule(frozenset({"x"}))})
    Tenant("t", rules={NODES: GenericRule(names=frozenset({"n1"}))})


def test_namespaces_a_tenant_does_not_own_do_not_make_its_service_accounts_members() -> None:
    tenant = Tenant("team-a", Members(all_service_accounts_of_own_namespaces=True))
    assert view_for(Caller("system:serviceaccount:team-a-dev:ci"), [tenant], OWNER) is not None
    assert view_for(Caller("system:serviceaccount:team-b-dev:ci"), [tenant], OWNER) is None
    assert view_for(Caller("system:serviceaccount:team-a-dev"), [tenant], OWNER) is None


@pytest.mark.parametrize(
    ("user", "namespace"),
    [
        ("system:serviceaccount:ns:name", "ns"),
        ("system:serviceaccount:ns", None),
        ("system:serviceaccount::name", None),
        ("system:serviceaccount:ns:", None),
        ("system:serviceaccount:ns:a:b", None),
        ("alice", None),
    ],
)
def test_service_account_namespace(user: str, namespace: str | None) -> None:
    assert service_account_namespace(user) == namespace


_keys = st.sampled_from(["a", "b", "c"])
_values = st.sampled_from(["x", "y", "1", "2"])
_ORDERED = (Op.GREATER_THAN, Op.LESS_THAN)
_requirements = st.one_of(
    st.builds(
        lambda key, op, values: Requirement(key, op, tuple(sorted(set(values)))),
        _keys,
        st.sampled_from([op for op in Op if op not in _ORDERED]),
        st.lists(_values, min_size=1, max_size=3),
    ),
    # As the selector parser makes them: one integer bound.
    st.builds(
        lambda key, op, bound: Requirement(key, op, (str(bound),)),
        _keys,
        st.sampled_from(_ORDERED),
        st.integers(-3, 3),
    ),
)


@given(
    st.lists(_requirements, max_size=3),
    st.dictionaries(_keys, _values, max_size=3),
)
def test_a_judges_compiled_label_test_is_the_selectors_own(
    requirements: list[Requirement], labels: dict[str, str]
) -> None:
    selector = Selector(tuple(requirements))
    assert label_test(selector)(labels) == selector.matches(labels)


def test_every_authenticated_caller_is_in_system_authenticated_as_kube_apiserver_says() -> None:
    everyone = Tenant(
        name="all",
        members=Members(groups=frozenset({"system:authenticated"})),
        namespace_options=NamespaceOptions("tenant-proxy.io/tenant"),
    )
    for caller in (Identity("alice"), Identity("bob", groups=("devs",))):
        assert is_member(caller, everyone, frozenset())
        assert caller_groups(caller)[-1] == "system:authenticated"
    assert not is_member(Identity("system:anonymous"), everyone, frozenset())
    said = Identity("carol", groups=("system:authenticated", "x"))
    assert caller_groups(said) == ("system:authenticated", "x")
