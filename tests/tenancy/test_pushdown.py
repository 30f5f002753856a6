"""Pushdown: a tenant's rule as an upstream label selector, ANDed with the client's."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.kube.labels import SelectorError, from_label_selector
from tenant_proxy.kube.resources import NAMESPACES, NODES, PERSISTENT_VOLUMES
from tenant_proxy.kube.selector_syntax import parse_selector
from tenant_proxy.tenancy.model import Members, Tenant, TenantView, owns, view_for
from tenant_proxy.tenancy.pushdown import (
    MAX_SELECTOR_BYTES,
    NAME_LABEL,
    Nothing,
    PushDown,
    Rewrite,
    plan_read,
    pushdown,
    rule_selector,
)
from tenant_proxy.tenancy.rules import ClaimNamespaceRule, NodeRule

KEYS = ["a", "b", "pool", NAME_LABEL]
VALUES = ["x", "y", "ns1", "ns2"]


@dataclass(frozen=True)
class Caller:
    user: str
    groups: tuple[str, ...] = ()


ALICE = Caller("alice")


def view(*tenants: Tenant, owner: dict[str, str] | None = None) -> TenantView:
    v = view_for(ALICE, tenants, owner or {})
    assert v is not None
    return v


def tenant(name: str, **kwargs: object) -> Tenant:
    return Tenant(name, Members(users=frozenset({"alice"})), **kwargs)  # type: ignore[arg-type]


simple_requirements = st.one_of(
    st.builds("{}={}".format, st.sampled_from(KEYS), st.sampled_from(VALUES)),
    st.builds("{}!={}".format, st.sampled_from(KEYS), st.sampled_from(VALUES)),
    st.builds(
        lambda k, vs: f"{k} in ({','.join(vs)})",
        st.sampled_from(KEYS),
        st.lists(st.sampled_from(VALUES), min_size=1, max_size=3),
    ),
    st.builds(
        lambda k, vs: f"{k} notin ({','.join(vs)})",
        st.sampled_from(KEYS),
        st.lists(st.sampled_from(VALUES), min_size=1, max_size=3),
    ),
    st.sampled_from(KEYS),
    st.sampled_from(KEYS).map("!{}".format),
)
selector_texts = st.lists(simple_requirements, max_size=3).map(",".join)
label_sets = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES))


@given(selector_texts, st.one_of(st.none(), selector_texts), label_sets)
def test_pushdown_matches_exactly_what_rule_and_client_both_match(
    rule: str, client: str | None, labels: dict[str, str]
) -> None:
    combined = pushdown(rule, client)
    assert combined is not None
    expected = parse_selector(rule).matches(labels) and parse_selector(client or "").matches(labels)
    assert parse_selector(combined).matches(labels) == expected


def test_no_rule_selector_means_rewrite() -> None:
    assert pushdown(None, "a=b") is None


@pytest.mark.parametrize("client", ["x notin (y", "a in (b", "a=b,", "!"])
def test_a_client_selector_cannot_swallow_the_rule(client: str) -> None:
    # Glued as strings, "x notin (y" + "," + rule would make the rule part of a value list.
    with pytest.raises(SelectorError):
        pushdown("kubernetes.io/metadata.name in (ns1)", client)
    with pytest.raises(SelectorError):
        plan_read(view(tenant("t"), owner={"ns1": "t"}), NAMESPACES, client)


def test_namespaces_by_name_become_a_metadata_name_selector() -> None:
    v = view(tenant("t", namespaces=frozenset({"ns2"})), owner={"ns1": "t", "other": "u"})
    assert str(rule_selector(v, NAMESPACES)) == "kubernetes.io/metadata.name in (ns1,ns2)"
    assert plan_read(v, NAMESPACES, "team=x") == PushDown(
        "kubernetes.io/metadata.name in (ns1,ns2),team=x"
    )


def test_names_that_cannot_be_namespaces_are_left_out_of_the_selector() -> None:
    v = view(tenant("t", namespaces=frozenset({"Bad/Name", "x" * 64, "ok"})))
    assert str(rule_selector(v, NAMESPACES)) == "kubernetes.io/metadata.name in (ok)"
    assert rule_selector(view(tenant("t", namespaces=frozenset({"a b"}))), NAMESPACES) == Nothing()


def test_a_tenant_without_namespaces_gets_nothing_not_an_invalid_selector() -> None:
    v = view(tenant("t"))
    assert rule_selector(v, NAMESPACES) == Nothing()
    assert plan_read(v, NAMESPACES, None) == Nothing()


def test_a_very_long_name_list_falls_back_to_rewriting() -> None:
    many = {f"namespace-{i:05d}": "t" for i in range(MAX_SELECTOR_BYTES // 10)}
    v = view(tenant("t"), owner=many)
    assert rule_selector(v, NAMESPACES) is None
    assert plan_read(v, NAMESPACES, None) == Rewrite()


def test_node_selector_is_pushed_down_and_claim_rules_are_rewritten() -> None:
    pool = from_label_selector({"matchLabels": {"pool": "a"}})
    v = view(tenant("t", rules={NODES: NodeRule(pool), PERSISTENT_VOLUMES: ClaimNamespaceRule()}))
    assert plan_read(v, NODES, None) == PushDown("pool=a")
    assert plan_read(v, PERSISTENT_VOLUMES, None) == Nothing()  # no namespaces: no PVs either
    v = view(tenant("t", rules={PERSISTENT_VOLUMES: ClaimNamespaceRule()}), owner={"ns1": "t"})
    assert plan_read(v, PERSISTENT_VOLUMES, None) == Rewrite()


def test_two_tenants_with_different_node_selectors_are_rewritten() -> None:
    a = tenant("a", rules={NODES: NodeRule(from_label_selector({"matchLabels": {"pool": "a"}}))})
    b = tenant("b", rules={NODES: NodeRule(from_label_selector({"matchLabels": {"pool": "b"}}))})
    same = tenant("c", rules={NODES: NodeRule(from_label_selector({"matchLabels": {"pool": "a"}}))})
    assert rule_selector(view(a, b), NODES) is None
    assert plan_read(view(a, same), NODES, None) == PushDown("pool=a")


@given(
    st.frozensets(st.sampled_from(["ns1", "ns2", "ns3"])),
    st.one_of(st.none(), selector_texts),
    st.sampled_from(["ns1", "ns2", "ns3", "ns4"]),
    label_sets,
)
def test_pushed_down_namespace_query_returns_exactly_owned_and_client_matching(
    owned: frozenset[str], client: str | None, name: str, labels: dict[str, str]
) -> None:
    v = view(tenant("t", namespaces=owned))
    namespace = {"metadata": {"name": name, "labels": {**labels, NAME_LABEL: name}}}
    client_matches = parse_selector(client or "").matches(namespace["metadata"]["labels"])
    expected = owns(v, NAMESPACES, namespace) and client_matches
    decision = plan_read(v, NAMESPACES, client)
    if isinstance(decision, Nothing):
        assert not expected
    else:
        assert isinstance(decision, PushDown)
        upstream = parse_selector(decision.label_selector)
        assert upstream.matches(namespace["metadata"]["labels"]) == expected
