"""Differential: tenant lists, as production composes them, equal an independent oracle.

Two production paths are driven with plain values, as the proxy composes them:
- read upstream: `pushdown.plan_read`, then either the API server's own answer (a pushed-down
  selector) or the production pager (`filtering.pager.ListPager`, which the list executor
  drives with upstream I/O) over the upstream's pages, the tenant's `limit` honoured across
  them with continue positions;
- from the watch cache: `watchcache.listing.page_of` and `list_bytes`, as `list_from_cache` uses
  them, page after page.
The upstream is simulated with the emulator's own selector matcher (written separately from
kube.labels), paginated; the oracle is written from the issue's rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tenant_proxy.emulator.selectors import labels_match, parse_labels
from tenant_proxy.filtering.continuation import Position
from tenant_proxy.filtering.objects import partial_metadata
from tenant_proxy.filtering.pager import Answer, ListPager, Read
from tenant_proxy.filtering.pages import Page, Splitting, upstream_continue
from tenant_proxy.filtering.shape import Shape, shape_for
from tenant_proxy.filtering.watch_requests import client_selector
from tenant_proxy.kube.labels import from_label_selector
from tenant_proxy.kube.resources import NAMESPACES, NODES, PERSISTENT_VOLUMES, GroupResource
from tenant_proxy.requestinfo import Query, classify
from tenant_proxy.tenancy.model import Members, Tenant, TenantView, view_for
from tenant_proxy.tenancy.ownership import Owns
from tenant_proxy.tenancy.pushdown import Nothing, PushDown, plan_read
from tenant_proxy.tenancy.rules import ClaimNamespaceRule, NodeRule, Rule
from tenant_proxy.watchcache.listing import list_bytes, page_of
from tenant_proxy.watchcache.replay import Side
from tenant_proxy.watchcache.stored import Stored

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
            if draw(st.sampled_from([True, True, False]))
            else {},
        }
        # Enough of them for a tenant's share to span upstream pages and the client's limit.
        for i in range(draw(st.integers(1, 9)))
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


KINDS = {NAMESPACES: "Namespace", NODES: "Node", PERSISTENT_VOLUMES: "PersistentVolume"}
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
PARTIAL = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"
# The client's forms: (Accept, includeObject).
FORMS = {
    "json": ("application/json", None),
    "table": (TABLE, None),
    "table-none": (TABLE, "None"),
    "partial": (PARTIAL, None),
}


def shape_of(gr: GroupResource, fmt: str, client: str, full: bool) -> Shape:
    """The shape production picks for this request (`full`: whole objects are needed)."""
    accept, include = FORMS[fmt]
    params = {k: v for k, v in (("labelSelector", client), ("includeObject", include)) if v}
    info = classify("GET", f"/api/v1/{gr.resource}", urlencode(params))
    return shape_for(accept, info, full_object=full)


def upstream_pages(
    objects: list[dict[str, Any]], selector: str | None, size: int
) -> list[list[dict[str, Any]]]:
    """What the API server answers, page by page, for a labelSelector (None: one matching
    nothing, as the proxy sends for a tenant that can see nothing); never empty: 1 page."""
    matched = (
        [] if selector is None else [o for o in objects if labels_match(parse_labels(selector), o)]
    )
    return [matched[i : i + size] for i in range(0, len(matched), size)] or [[]]


def encode(page: list[dict[str, Any]], shape: Shape, following: str | None) -> bytes:
    """One upstream page as the API server answers what `shape` asks of it."""
    meta: dict[str, Any] = {"resourceVersion": "7"}
    if following is not None:
        meta["continue"] = following
    if shape.table:
        whole = shape.include_object == "Object"
        rows = [
            {"cells": [o["metadata"]["name"]], "object": o if whole else partial_metadata(o)}
            for o in page
        ]
        return orjson.dumps(
            {"kind": "Table", "metadata": meta, "columnDefinitions": [], "rows": rows}
        )
    if "as=partialobjectmetadatalist" in shape.accept.lower():
        items = [partial_metadata(o) for o in page]
        return orjson.dumps({"kind": "PartialObjectMetadataList", "metadata": meta, "items": items})
    return orjson.dumps({"kind": "List", "metadata": meta, "items": page})


def split(body: bytes, keep: Owns) -> Page:
    """`serving.bodies.split_page`: sliced (a small slice here, so slicing is exercised too)."""
    splitting = Splitting(body, keep, keep.fields)
    while not splitting.step(2):
        pass
    return splitting.page


def rewritten_list(
    bodies: list[bytes], keep: Owns, shape: Shape, want: int | None, size: int
) -> list[dict[str, Any]]:
    """The tenant's pages, as the list executor (`serving/filtered_list.py`) composes them: the
    production pager (`filtering.pager.ListPager`) driven over the upstream's pages, one
    request per page, each continuing from the position the one before answered."""
    by_token = {f"p{i}": body for i, body in enumerate(bodies)}
    position: Position | None = None
    answers: list[dict[str, Any]] = []
    for _ in range(sum(len(b) for b in bodies) + 2):  # a pager that loops fails below
        pager = ListPager(Query(raw=""), keep, shape, position, size, want, max_bytes=1 << 30)
        step: Read | Answer = pager.start()
        while isinstance(step, Read):
            body = by_token[step.following] if step.following is not None else bodies[0]
            step = pager.feed(split(body, keep), upstream_continue(body))
        position = step.resume
        answers.append(orjson.loads(step.body("sealed" if position is not None else None)))
        if position is None:
            return answers
    raise AssertionError(f"the pager did not end: {answers}")


def cached_list(
    objects: list[dict[str, Any]],
    gr: GroupResource,
    view: TenantView,
    client: str,
    shape: Shape,
    want: int | None,
) -> list[dict[str, Any]]:
    """The tenant's pages from the watch cache, as `CachedLists.serve` makes them: the state's
    names in order, `page_of` past the last name answered. A Table's rows are printed by the
    API server (RowBook, I/O): for a Table only the objects chosen are compared."""
    state = {o["metadata"]["name"]: Stored.of(o) for o in objects}
    side = Side(view.rules[gr], view.owns(gr)) if gr in view.rules else None
    selected = client_selector(client or None, None, "")
    after, answers = "", []
    for _ in range(len(objects) + 2):
        items, last = page_of(state, sorted(state), side, selected, after, want)
        if shape.table:
            answers.append({"kind": "Table", "rows": [{"cells": [o.name]} for o in items]})
        else:
            kept = [o for o in items if isinstance(o, Stored)]
            assert len(kept) == len(items)
            body = list_bytes(KINDS[gr], "v1", kept, 7, last, shape.partial)
            answers.append(orjson.loads(body))
        if last is None:
            return answers
        after = last
    raise AssertionError(f"the cache's pages did not end: {answers}")


def answered(doc: dict[str, Any]) -> list[str]:
    if doc["kind"] == "Table":
        return [r["cells"][0] for r in doc["rows"]]
    return [i["metadata"]["name"] for i in doc["items"]]


def check_pages(answers: list[dict[str, Any]], fmt: str | None, want: int | None) -> list[str]:
    """The names the client got over all pages, each page checked for its limit and, unless
    `fmt` is None, its form."""
    got: list[str] = []
    for doc in answers:
        if fmt == "partial":
            assert all(i["kind"] == "PartialObjectMetadata" for i in doc["items"]), doc
        if fmt == "table-none":
            assert all(r["object"] is None for r in doc["rows"]), doc
        names = answered(doc)
        assert want is None or len(names) <= want, doc
        got += names
    return got


client_selectors = st.sampled_from(
    ["", "tier=web", "tier!=web", "!tier", "tier", "pool in (p1)", "tier notin (db),pool"]
)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None)
@given(
    world=worlds(),
    user=st.sampled_from(["alice", "alice", "bob", "carol"]),
    gr=st.sampled_from([NAMESPACES, NODES, PERSISTENT_VOLUMES, PERSISTENT_VOLUMES]),
    fmt=st.sampled_from(sorted(FORMS)),
    client=client_selectors,
    size=st.sampled_from([1, 1, 2, 2, 3, 5, 7]),
    want=st.none() | st.integers(1, 4),
)
def test_tenant_list_answer_equals_the_oracle(
    world: dict[str, Any],
    user: str,
    gr: GroupResource,
    fmt: str,
    client: str,
    size: int,
    want: int | None,
) -> None:
    """`size`: the upstream's page size; `want`: the client's `limit`."""
    expected = oracle(world, user, gr, client)
    view = view_for(Caller(user), tenants(world["specs"]), world["owner"])
    if view is None or not view.filters(gr):
        event("pass-through")
        # Pass-through: the cluster's RBAC decides; nothing of the tenant's rules applies.
        assert view is None or gr not in view.rules
        return
    objects = world["objects"][gr]
    # From the watch cache: it holds whole objects, any form is made of them.
    whole = shape_of(gr, fmt, client, full=True)
    cached_pages = cached_list(objects, gr, view, client, whole, want)
    cached = check_pages(cached_pages, None if whole.table else fmt, want)
    assert cached == sorted(expected)  # the cache answers in name order (the world's here)

    # Read upstream.
    decision = plan_read(view, gr, client or None)
    event(f"{type(decision).__name__}, {len(expected)} expected")
    shape = shape_of(gr, fmt, client, view.needs_full_object(gr))
    if isinstance(decision, Nothing):
        selector: str | None = None
    elif isinstance(decision, PushDown):
        selector = decision.label_selector
    else:
        selector = client
    pages = upstream_pages(objects, selector, size)
    if isinstance(decision, PushDown) and not (shape.partial or shape.strip_objects):
        event("relayed")
        # The API server applies the rule itself: its answer is relayed as it is.
        got = [o["metadata"]["name"] for page in pages for o in page]
    else:
        event(f"paged: {min(len(pages), 2)}+ upstream pages, limit {want is not None}")
        bodies = [
            encode(page, shape, f"p{i + 1}" if i + 1 < len(pages) else None)
            for i, page in enumerate(pages)
        ]
        got = check_pages(rewritten_list(bodies, view.owns(gr), shape, want, size), fmt, want)
    assert got == expected
