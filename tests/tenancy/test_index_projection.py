"""What the index keeps of each object, and when a tenancy change makes it re-read a resource."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.kube.labels import from_label_selector
from tenant_proxy.kube.resources import CRDS, NAMESPACES, NODES, PERSISTENT_VOLUMES, GroupResource
from tenant_proxy.tenancy.model import Members, Tenant, TenantView, owns, view_for
from tenant_proxy.tenancy.projection import (
    covers,
    plan_projections,
    project,
    projection_needs,
)
from tenant_proxy.tenancy.rules import ApiGroupRule, ClassRule, GenericRule, NodeRule

WIDGETS = GroupResource("example.com", "widgets")
GADGETS = GroupResource("example.com", "gadgets")
INGRESS_CLASSES = GroupResource("networking.k8s.io", "ingressclasses")
CLAIM = ("spec", "claimRef", "namespace")
RESOURCES = [NAMESPACES, NODES, PERSISTENT_VOLUMES, WIDGETS, GADGETS]
PATHS = [("spec", "owner"), ("spec",), ("spec", "owner", "ns"), ("status", "ns"), CLAIM]


def test_projection_keeps_name_labels_and_the_fields_read_only() -> None:
    obj = {
        "metadata": {"name": "w", "labels": {"a": "b"}, "annotations": {"x": "y"}, "uid": "1"},
        "spec": {"owner": "ns1", "size": 3},
        "status": {"phase": "Bound"},
    }
    assert project(obj, [("spec", "owner"), ("spec", "missing")]) == {
        "metadata": {"name": "w", "labels": {"a": "b"}},
        "spec": {"owner": "ns1"},
    }
    assert project({"metadata": {"name": "w"}}, []) == {"metadata": {"name": "w", "labels": {}}}


def test_needs_list_every_ruled_resource_with_the_fields_its_rules_read() -> None:
    a = Tenant(
        name="a",
        rules={
            NODES: NodeRule(from_label_selector({"matchLabels": {"pool": "a"}})),
            WIDGETS: GenericRule(field_path="spec.owner"),
            INGRESS_CLASSES: ClassRule(names=frozenset({"x"})),
        },
    )
    b = Tenant(
        name="b",
        rules={
            WIDGETS: GenericRule(field_path="status.ns"),
            CRDS: ApiGroupRule(groups=frozenset({"x.io"})),
        },
    )
    assert projection_needs([a, b]) == {
        NAMESPACES: frozenset(),
        NODES: frozenset(),
        WIDGETS: frozenset({("spec", "owner"), ("status", "ns")}),
        INGRESS_CLASSES: frozenset(),
        CRDS: frozenset({("spec", "group")}),
    }
    assert projection_needs([]) == {NAMESPACES: frozenset()}


def test_a_held_path_covers_itself_and_every_path_below_it() -> None:
    assert covers([("spec",)], ("spec", "owner"))
    assert covers([("spec", "owner")], ("spec", "owner"))
    assert not covers([("spec", "owner")], ("spec",))
    assert not covers([("spec", "own")], ("spec", "owner"))
    assert not covers([], ("spec",))


def test_plan_starts_reprojects_and_stops_what_the_rules_ask() -> None:
    held = {
        NAMESPACES: frozenset(),
        WIDGETS: frozenset({("spec",)}),
        GADGETS: frozenset({("spec", "a")}),
        NODES: frozenset(),
    }
    needed = {
        NAMESPACES: frozenset(),
        WIDGETS: frozenset({("spec", "owner")}),  # covered by spec: no re-list
        GADGETS: frozenset({("spec", "a"), ("spec", "b")}),
        PERSISTENT_VOLUMES: frozenset({CLAIM}),
    }
    plan = plan_projections(held, needed)
    assert plan.start == {PERSISTENT_VOLUMES}
    assert plan.reproject == {GADGETS}
    assert plan.stop == {NODES}
    assert plan.resync == {PERSISTENT_VOLUMES, GADGETS}


def test_a_field_no_rule_reads_any_more_causes_no_relist() -> None:
    plan = plan_projections({WIDGETS: frozenset({("a",), ("b",)})}, {WIDGETS: frozenset({("a",)})})
    assert plan.start == plan.reproject == plan.stop == frozenset()


needs_strategy = st.dictionaries(
    st.sampled_from(RESOURCES), st.frozensets(st.sampled_from(PATHS), max_size=3)
)


@given(needs_strategy, needs_strategy)
def test_after_the_plan_every_needed_field_is_held_and_nothing_else_runs(
    held: dict[GroupResource, frozenset[tuple[str, ...]]],
    needed: dict[GroupResource, frozenset[tuple[str, ...]]],
) -> None:
    plan = plan_projections(held, needed)
    after = {gr: paths for gr, paths in held.items() if gr not in plan.stop}
    after.update({gr: needed[gr] for gr in plan.resync})
    assert after.keys() == needed.keys()
    for gr, paths in needed.items():
        assert all(covers(after[gr], p) for p in paths)
    # Only what lacks a field is read again.
    for gr in plan.reproject:
        assert not all(covers(held[gr], p) for p in needed[gr])
    assert plan.start.isdisjoint(held)
    assert plan.reproject <= held.keys()


values = st.one_of(st.sampled_from(["ns1", "ns2", "other"]), st.integers(), st.none())
objects = st.fixed_dictionaries(
    {
        "metadata": st.fixed_dictionaries(
            {
                "name": st.sampled_from(["w1", "w2"]),
                "labels": st.dictionaries(st.sampled_from(["k"]), st.sampled_from(["v", "t1"])),
            }
        ),
        "spec": st.dictionaries(
            st.sampled_from(["owner", "size"]),
            st.one_of(values, st.dictionaries(st.sampled_from(["ns"]), values)),
        ),
        "status": st.dictionaries(st.sampled_from(["ns"]), values),
    }
)
rules = st.builds(
    GenericRule,
    names=st.frozensets(st.sampled_from(["w1"]), max_size=1),
    field_path=st.sampled_from([None, "spec.owner", "spec.owner.ns", "status.ns"]),
)


@dataclass(frozen=True)
class Caller:
    user: str
    groups: tuple[str, ...]


@given(st.lists(rules, min_size=1, max_size=3), objects)
def test_owns_judges_a_projection_as_it_judges_the_whole_object(
    widget_rules: list[GenericRule], obj: dict[str, Any]
) -> None:
    tenants = [
        Tenant(
            name=f"t{i}",
            members=Members(groups=frozenset({"devs"})),
            namespaces=frozenset({f"ns{i}"}),
            rules={WIDGETS: rule},
        )
        for i, rule in enumerate(widget_rules, start=1)
    ]
    view = view_for(Caller("u", ("devs",)), tenants, {})
    assert isinstance(view, TenantView)
    paths = projection_needs(tenants)[WIDGETS]
    assert owns(view, WIDGETS, project(obj, paths)) == owns(view, WIDGETS, obj)
