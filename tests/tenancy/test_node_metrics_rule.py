"""nodes.metrics.k8s.io follows the nodes rule: a tenant sees the NodeMetrics of its nodes only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.kube.labels import Selector, from_label_selector
from tenant_proxy.kube.resources import NODE_METRICS, NODES
from tenant_proxy.tenancy import pushdown
from tenant_proxy.tenancy.model import Members, Tenant, owns, view_for
from tenant_proxy.tenancy.rules import GenericRule, NodeMetricsRule, NodeRule, Rule

KEYS = ["pool", "zone"]
VALUES = ["a", "b", "shared"]
NAMES = ["node-a1", "node-b1", "node-shared"]


@dataclass(frozen=True)
class Caller:
    user: str
    groups: tuple[str, ...] = ()


ALICE = Caller("alice")

labels = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2)


@st.composite
def selectors(draw: st.DrawFn) -> Selector:
    expressions = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "key": st.sampled_from(KEYS),
                    "operator": st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]),
                }
            ),
            max_size=2,
        )
    )
    for expr in expressions:
        if expr["operator"] in ("In", "NotIn"):
            expr["values"] = draw(st.lists(st.sampled_from(VALUES), min_size=1, max_size=2))
    return from_label_selector({"matchLabels": draw(labels), "matchExpressions": expressions})


@st.composite
def node_rules(draw: st.DrawFn) -> Rule:
    if draw(st.booleans()):
        return NodeRule(draw(selectors()))
    return GenericRule(
        draw(st.one_of(st.none(), selectors())),
        frozenset(draw(st.sets(st.sampled_from(NAMES), max_size=2))),
        draw(st.sampled_from([None, "spec.providerID"])),
    )


@st.composite
def nodes(draw: st.DrawFn) -> dict[str, Any]:
    node: dict[str, Any] = {"metadata": {"name": draw(st.sampled_from(NAMES))}}
    node["metadata"]["labels"] = draw(labels)
    if draw(st.booleans()):
        node["spec"] = {"providerID": draw(st.sampled_from(["ns1", "ns2"]))}
    return node


def metrics_of(node: dict[str, Any]) -> dict[str, Any]:
    """The NodeMetrics metrics-server serves for `node`: its name and labels, no node fields."""
    return {
        "kind": "NodeMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {
            "name": node["metadata"]["name"],
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": dict(node["metadata"]["labels"]),
        },
        "timestamp": "2026-01-01T00:00:00Z",
        "window": "15s",
        "usage": {"cpu": "1", "memory": "2Gi"},
    }


def tenant(name: str, rules: dict[Any, Rule], user: str = "alice") -> Tenant:
    return Tenant(
        name, Members(users=frozenset({user})), namespaces=frozenset({"ns1"}), rules=rules
    )


@given(rules=st.lists(node_rules(), min_size=1, max_size=2), node=nodes())
def test_node_metrics_are_owned_exactly_when_their_node_is_unless_a_field_decides(
    rules: list[Rule], node: dict[str, Any]
) -> None:
    view = view_for(ALICE, [tenant(f"t{i}", {NODES: r}) for i, r in enumerate(rules)], {})
    assert view is not None
    sees_node = owns(view, NODES, node)
    sees_metrics = owns(view, NODE_METRICS, metrics_of(node))
    # Never more than the nodes; exactly the nodes when no field of the node is involved.
    assert not sees_metrics or sees_node
    if not any(isinstance(r, GenericRule) and r.field_path for r in rules):
        assert sees_metrics == sees_node


@given(selector=selectors(), client=st.sampled_from(["", "pool=a", "zone in (b)", "!zone"]))
def test_a_node_selector_pushes_down_to_metrics_server_as_it_does_for_nodes(
    selector: Selector, client: str
) -> None:
    view = view_for(ALICE, [tenant("t", {NODES: NodeRule(selector)})], {})
    assert view is not None
    assert pushdown.plan_read(view, NODE_METRICS, client) == pushdown.plan_read(view, NODES, client)


def test_a_field_only_node_rule_grants_no_metrics() -> None:
    rule = GenericRule(field_path="spec.providerID")
    view = view_for(ALICE, [tenant("t", {NODES: rule})], {})
    assert view is not None
    node = {"metadata": {"name": "node-a1", "labels": {}}, "spec": {"providerID": "ns1"}}
    assert owns(view, NODES, node)
    assert not owns(view, NODE_METRICS, metrics_of(node))
    assert isinstance(pushdown.plan_read(view, NODE_METRICS, None), pushdown.Nothing)


@pytest.mark.parametrize(
    ("rules", "filtered"),
    [
        ({NODES: NodeRule(from_label_selector({"matchLabels": {"pool": "a"}}))}, True),
        ({}, False),
    ],
)
def test_node_metrics_are_filtered_exactly_when_nodes_are(
    rules: dict[Any, Rule], filtered: bool
) -> None:
    view = view_for(ALICE, [tenant("t", rules)], {})
    assert view is not None
    assert (view.filters(NODES), view.filters(NODE_METRICS)) == (filtered, filtered)


def test_another_tenants_node_rule_gives_no_metrics() -> None:
    theirs = tenant("t2", {NODES: NodeRule(from_label_selector({}))}, user="bob")
    view = view_for(ALICE, [tenant("t1", {}), theirs], {})
    assert view is not None
    assert not view.filters(NODE_METRICS)


def test_an_explicit_node_metrics_rule_is_kept() -> None:
    explicit = GenericRule(names=frozenset({"node-b1"}))
    nodes_rule = NodeRule(from_label_selector({"matchLabels": {"pool": "a"}}))
    rules = tenant("t", {NODES: nodes_rule, NODE_METRICS: explicit}).all_rules()
    assert rules[NODE_METRICS] is explicit
    derived = tenant("t", {NODES: nodes_rule}).all_rules()[NODE_METRICS]
    assert derived == NodeMetricsRule(nodes_rule)
