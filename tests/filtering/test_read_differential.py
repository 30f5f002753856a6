"""Differential: list answers composed from pushdown + rewriting equal an independent oracle.

The upstream is simulated with the emulator's own selector matcher (written separately from
filtering.selectors), paginated; the oracle is written from the issue's rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tenant_proxy.emulator.selectors import labels_match, parse_labels
from tenant_proxy.filtering.forms import partial_metadata
from tenant_proxy.filtering.lists import filter_response
from tenant_proxy.filtering.pushdown import Nothing, PushDown, plan_read
from tenant_proxy.filtering.selectors import from_label_selector
from tenant_proxy.tenancy.model import (
    NAMESPACES,
    NODES,
    PERSISTENT_VOLUMES,
    ClaimNamespaceRule,
    GroupResource,
    Members,
    NodeRule,
    Rule,
    Tenant,
    owns,
    view_for,
)

NS = [f"ns{i}" for i in range(6)]
POOLS = ["p1", "p2"]
TIERS = ["web", "db"]


@dataclass(frozen=True)
class Caller:
    user: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class TenantSpec:
    name: str
    users: frozenset[str]
    pool: str | None  # node rule: pool=<pool>
    pvs: bool  # claim rule on PVs


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, Any]:
    specs = [
        TenantSpec(
            name,
            frozenset(draw(st.sets(st.sampled_from(["alice", "bob"]), min_size=1))),
            draw(st.sampled_from([None, *POOLS, *POOLS])),
            draw(st.sampled_from([False, True, True])),
        )
        for name in ("t1", "t2")
    ]
    owner = {n: draw(st.sampled_from(["t1", "t2", "other"])) for n in NS}

    def labels() -> dict[str, str]:
        return {"tier": draw(st.sampled_from(TIERS))} if draw(st.booleans()) else {}

    namespaces = [
        {"metadata": {"name": n, "labels": {**labels(), "kubernetes.io/metadata.name": n}}}
        for n in NS
    ]
    nodes = [
        {
            "metadata": {
                "name": f"node{i}",
                "labels": {**labels(), "pool": draw(st.sampled_from(POOLS))},
            }
        }
        for i in range(draw(st.integers(1, 6)))
    ]
    pvs = [
        {
            "metadata": {"name": f"pv{i}", "labels": labels()},
            "spec": {"claimRef": {"namespace": draw(st.sampled_from(NS))}}
            if draw(st.booleans())
            else {},
        }
        for i in range(draw(st.integers(1, 6)))
    ]
    objects = {NAMESPACES: namespaces, NODES: nodes, PERSISTENT_VOLUMES: pvs}
    return {"specs": specs, "owner": owner, "objects": objects}


def tenants(specs: list[TenantSpec]) -> list[Tenant]:
    out = []
    for s in specs:
        rules: dict[GroupResource, Rule] = {}
        if s.pool is not None:
            rules[NODES] = NodeRule(from_label_selector({"matchLabels": {"pool": s.pool}}))
        if s.pvs:
            rules[PERSISTENT_VOLUMES] = ClaimNamespaceRule()
        out.append(Tenant(s.name, Members(users=s.users), rules=rules))
    return out


def oracle(world: dict[str, Any], user: str, gr: GroupResource, client: str) -> list[str]:
    mine = [s for s in world["specs"] if user in s.users]
    own = {n for n, t in world["owner"].items() if t in {s.name for s in mine}}
    client_selector = parse_labels(client)
    names = []
    for obj in world["objects"][gr]:
        name, labels = obj["metadata"]["name"], obj["metadata"]["labels"]
        if gr == NAMESPACES:
            visible = name in own
        elif gr == NODES:
            visible = any(s.pool is not None and labels.get("pool") == s.pool for s in mine)
        else:
            claim = obj["spec"].get("claimRef", {}).get("namespace")
            visible = any(
                s.pvs and claim in {n for n, t in world["owner"].items() if t == s.name}
                for s in mine
            )
        if visible and labels_match(client_selector, obj):
            names.append(name)
    return names


def upstream_pages(objects: list[dict[str, Any]], selector: str, limit: int) -> list[list[Any]]:
    """What the API server answers, page by page, for a labelSelector (never empty: 1 page)."""
    matched = [o for o in objects if labels_match(parse_labels(selector), o)]
    return [matched[i : i + limit] for i in range(0, len(matched), limit)] or [[]]


def encode(page: list[dict[str, Any]], fmt: str, full: bool) -> bytes:
    meta = {"resourceVersion": "7"}
    if fmt == "table":
        rows = [
            {"cells": [o["metadata"]["name"]], "object": o if full else partial_metadata(o)}
            for o in page
        ]
        return orjson.dumps(
            {"kind": "Table", "metadata": meta, "columnDefinitions": [], "rows": rows}
        )
    items = page if fmt == "json" or full else [partial_metadata(o) for o in page]
    return orjson.dumps({"kind": "List", "metadata": meta, "items": items})


def answered(doc: dict[str, Any]) -> list[str]:
    if doc["kind"] == "Table":
        return [r["cells"][0] for r in doc["rows"]]
    return [i["metadata"]["name"] for i in doc["items"]]


client_selectors = st.sampled_from(
    ["", "tier=web", "tier!=web", "!tier", "tier", "pool in (p1)", "tier notin (db),pool"]
)


@settings(max_examples=250, deadline=None)
@given(
    world=worlds(),
    user=st.sampled_from(["alice", "alice", "bob", "carol"]),
    gr=st.sampled_from([NAMESPACES, NODES, PERSISTENT_VOLUMES]),
    fmt=st.sampled_from(["json", "table", "partial"]),
    client=client_selectors,
    limit=st.integers(1, 7),
)
def test_tenant_list_answer_equals_the_oracle(
    world: dict[str, Any], user: str, gr: GroupResource, fmt: str, client: str, limit: int
) -> None:
    expected = oracle(world, user, gr, client)
    view = view_for(Caller(user), tenants(world["specs"]), world["owner"])
    if view is None or not view.filters(gr):
        event("pass-through")
        # Pass-through: the cluster's RBAC decides; nothing of the tenant's rules applies.
        assert view is None or gr not in view.rules
        return
    decision = plan_read(view, gr, client or None)
    event(f"{type(decision).__name__}, {len(expected)} expected")
    if isinstance(decision, Nothing):
        assert expected == []
        return
    objects = world["objects"][gr]
    full = view.needs_full_object(gr)
    got: list[str] = []
    if isinstance(decision, PushDown):
        for page in upstream_pages(objects, decision.label_selector, limit):
            got += [o["metadata"]["name"] for o in page]
    else:
        for page in upstream_pages(objects, client, limit):
            body, _ = filter_response(
                encode(page, fmt, full),
                lambda o: owns(view, gr, o),
                metadata_only=full and fmt != "json",
            )
            doc = orjson.loads(body)
            if fmt == "partial":
                assert all(i["kind"] == "PartialObjectMetadata" for i in doc["items"])
            got += answered(doc)
    assert got == expected
