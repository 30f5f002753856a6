"""The pages of a rewritten list: splitting a page before judging it never changes the answer.

The property: for any list or Table page (well-formed items, odd values at every step a rule
reads, junk items), any start position and any page limit, the split (a few entries at a time,
as the proxy splits) + `take` answer exactly the entries the whole-body filter
(`filter_response`) keeps, in order, from that position on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tenant_proxy.filtering.continuation import Position
from tenant_proxy.filtering.lists import NotAList, filter_response
from tenant_proxy.filtering.objects import ObjectTest, passes
from tenant_proxy.filtering.pager import Answer, ListPager, Read
from tenant_proxy.filtering.pages import (
    Page,
    Splitting,
    assemble,
    continue_in_head,
    take,
    upstream_continue,
)
from tenant_proxy.filtering.shape import Shape
from tenant_proxy.filtering.tables import row_kept
from tenant_proxy.kube.labels import from_label_selector
from tenant_proxy.kube.resources import PERSISTENT_VOLUMES, GroupResource
from tenant_proxy.requestinfo import parse_query
from tenant_proxy.tenancy.model import Members, Tenant, view_for
from tenant_proxy.tenancy.rules import ClaimNamespaceRule, GenericRule

GADGETS = GroupResource("example.io", "gadgets")
NAMES = ["a", "b", "c", "d"]
NAMESPACES = ["ns1", "ns2", "ns3"]


def split_page(body: bytes, judge: ObjectTest, fields: frozenset[tuple[str, ...]]) -> Page:
    """A page split as `serving.bodies.split_page` splits it: a slice of entries at a time."""
    splitting = Splitting(body, judge, fields)
    while not splitting.step(3):
        pass
    return splitting.page


@dataclass(frozen=True)
class Caller:
    user: str
    groups: tuple[str, ...] = ()


TENANT = Tenant(
    "team-a",
    Members(users=frozenset({"alice"})),
    namespaces=frozenset({"ns1", "ns2"}),
    rules={
        PERSISTENT_VOLUMES: ClaimNamespaceRule(),
        GADGETS: GenericRule(
            selector=from_label_selector({"matchLabels": {"tier": "gold"}}),
            names=frozenset({"c"}),
            field_path="spec.owner.ns",
        ),
    },
)
VIEW = view_for(Caller("alice"), [TENANT], {})
assert VIEW is not None

odd = st.sampled_from([None, 3, "x", [], True, {}])
labels = st.one_of(
    st.dictionaries(st.sampled_from(["tier", "app"]), st.sampled_from(["gold", "lead"])),
    odd,
)


def nested(keys: list[str], leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """An object along `keys` ending in `leaf`, with an odd value possible at any step."""
    if not keys:
        return leaf
    inner = nested(keys[1:], leaf)
    return st.one_of(
        st.fixed_dictionaries({}, optional={keys[0]: inner, "other": st.integers(-(2**53), 2**53)}),
        odd,
    )


namespaces = st.one_of(st.sampled_from(NAMESPACES), odd)
objects = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.just("Thing"),
        "metadata": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "name": st.one_of(st.sampled_from(NAMES), odd),
                    "labels": labels,
                    "namespace": st.one_of(st.just(""), odd),
                },
            ),
            odd,
        ),
        "spec": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "claimRef": nested(["namespace"], namespaces),
                    "owner": nested(["ns"], namespaces),
                    "size": st.integers(-(2**53), 2**53),
                },
            ),
            odd,
        ),
    },
)
entries = st.one_of(objects, objects, objects, odd)


def as_table(items: list[Any], with_objects: bool) -> dict[str, Any]:
    rows = [
        {"cells": [i], "object": item} if with_objects else {"cells": [i]}
        for i, item in enumerate(items)
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "7"},
        "columnDefinitions": [{"name": "Name", "type": "string"}],
        "rows": rows,
    }


def as_list(items: list[Any], remaining: int | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": "7"}
    if remaining is not None:
        meta["remainingItemCount"] = remaining
    return {"kind": "ThingList", "apiVersion": "v1", "metadata": meta, "items": items}


@settings(max_examples=400)
# A name the rule allows on an object whose spec is not an object: only the full judgement
# can tell, so the split must leave it a candidate.
@example([{"metadata": {"name": "c"}, "spec": 3}], GADGETS, "list", 0, None, False, False)
@example([{"metadata": {"name": "c"}, "spec": "x"}], GADGETS, "table", 0, None, False, True)
# Stopping at `want` resumes at the first entry not answered, not after it.
@example(
    [{"metadata": {"name": "c"}}, {"metadata": {"name": "c"}}], GADGETS, "list", 0, 1, False, False
)
@given(
    st.lists(entries, max_size=8),
    st.sampled_from([PERSISTENT_VOLUMES, GADGETS]),
    st.sampled_from(["list", "table", "table-without-objects"]),
    st.integers(0, 9),
    st.one_of(st.none(), st.integers(1, 4)),
    st.booleans(),
    st.booleans(),
)
def test_a_page_answers_what_the_whole_filter_keeps_from_its_position(
    items: list[Any],
    gr: GroupResource,
    form: str,
    skip: int,
    want: int | None,
    strip: bool,
    metadata_only: bool,
) -> None:
    table = form != "list"
    doc = as_table(items, form == "table") if table else as_list(items, 3)
    body = orjson.dumps(doc)
    keep = VIEW.owns(gr)
    whole = orjson.loads(
        filter_response(body, keep, strip_objects=strip, metadata_only=metadata_only)[0]
    )["rows" if table else "items"]
    kept_at = [
        i
        for i, entry in enumerate(doc["rows"] if table else doc["items"])
        if (row_kept(keep, entry) if table else passes(keep, entry))
    ]
    assert len(kept_at) == len(whole)

    page = split_page(body, keep, keep.fields)
    taken = take(page, keep, skip=skip, want=want, strip_objects=strip, metadata_only=metadata_only)

    expected = [entry for at, entry in zip(kept_at, whole, strict=True) if at >= skip][:want]
    assert taken.entries == expected
    # Nothing the tenant owns is skipped over: every kept entry before next_skip was answered.
    assert [at for at in kept_at if skip <= at < taken.next_skip] == [
        at for at in kept_at if at >= skip
    ][: len(expected)]
    assert taken.next_skip == page.size or (want is not None and len(expected) == want)
    # The next page starts exactly where this one stopped: its first kept entry is the next.
    rest = take(page, keep, skip=taken.next_skip, strip_objects=strip, metadata_only=metadata_only)
    assert expected + rest.entries == [
        e for at, e in zip(kept_at, whole, strict=True) if at >= skip
    ]


def test_the_judge_sees_only_the_fields_it_reads() -> None:
    seen: list[Mapping[str, Any]] = []
    item = {
        "metadata": {"name": "a", "labels": {"x": "y"}, "uid": "u", "managedFields": [{}]},
        "spec": {"claimRef": {"namespace": "ns1", "name": "claim"}, "capacity": {"s": "1"}},
        "status": {"phase": "Bound"},
    }
    split_page(
        orjson.dumps(as_list([item], None)),
        lambda obj: bool(seen.append(obj)),
        frozenset({("metadata", "name"), ("spec", "claimRef", "namespace")}),
    )
    assert seen == [{"metadata": {"name": "a"}, "spec": {"claimRef": {"namespace": "ns1"}}}]


def test_a_judge_reads_labels_only_when_a_selector_needs_them() -> None:
    assert VIEW.owns(PERSISTENT_VOLUMES).fields == {
        ("metadata", "name"),
        ("spec", "claimRef", "namespace"),
    }
    assert ("metadata", "labels") in VIEW.owns(GADGETS).fields


def test_the_answer_carries_the_proxy_metadata_only() -> None:
    items = [
        {"metadata": {"name": "a"}, "spec": {"claimRef": {"namespace": "ns1"}}},
        {"metadata": {"name": "b"}, "spec": {"claimRef": {"namespace": "ns3"}}},
    ]
    doc = as_list(items, 5)
    doc["metadata"]["continue"] = "upstream-token-naming-b"
    body = orjson.dumps(doc)
    assert upstream_continue(body) == "upstream-token-naming-b"
    keep = VIEW.owns(PERSISTENT_VOLUMES)
    page = split_page(body, keep, keep.fields)
    assert page.size == 2
    assert [at for at, _ in page.candidates] == [0]
    answer = orjson.loads(
        assemble(
            page,
            take(page, keep, metadata_only=True).entries,
            metadata_only=True,
            continue_token="ours",
        )
    )
    assert answer == {
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "7", "continue": "ours"},
        "items": [
            {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": {"name": "a"},
            }
        ],
    }


def test_pages_of_another_shape_are_judged_whole() -> None:
    keep = VIEW.owns(PERSISTENT_VOLUMES)
    body = orjson.dumps({**as_list([{"metadata": {"name": "a"}}], None), "extra": 1})
    page = split_page(body, keep, keep.fields)
    assert page.envelope["extra"] == 1
    assert len(page.candidates) == 1
    for junk in (b"not json", b"[1]", b'{"kind":"Status"}', b'{"items":{}}'):
        with pytest.raises(NotAList):
            split_page(junk, keep, keep.fields)
    assert upstream_continue(b"not json") is None


def test_the_head_of_a_page_names_its_continue_token_when_it_can() -> None:
    head = b'{"kind":"PersistentVolumeList","apiVersion":"v1","metadata":{"resourceVersion":"9",'
    assert continue_in_head(
        head + b'"continue":"eyJ2Ijo-_=","remainingItemCount":3},"items":['
    ) == ("eyJ2Ijo-_=")
    # Cut before the token ends, or no token at all: no hint (the whole page decides).
    assert continue_in_head(head + b'"continue":"eyJ2') is None
    assert continue_in_head(head + b'"remainingItemCount":3},"items":[') is None
    # An object's metadata nests (labels): a "continue" key in it is never the list's.
    inner = b'{"items":[{"metadata":{"labels":{"a":"b"},"continue":"x"}}]}'
    assert continue_in_head(inner) is None


@settings(max_examples=300)
@given(
    st.lists(entries, max_size=12),
    st.sampled_from([PERSISTENT_VOLUMES, GADGETS]),
    st.integers(1, 4),
    st.integers(1, 5),
)
def test_pages_resumed_where_they_stopped_add_up_to_the_whole_list(
    items: list[Any], gr: GroupResource, upstream_page: int, limit: int
) -> None:
    """The production pager (`filtering.pager.ListPager`) over upstream pages of
    `upstream_page`, client pages of at most `limit`, each resumed where the one before
    stopped, adds up to the whole-body filter's answer."""
    keep = VIEW.owns(gr)
    whole = orjson.loads(filter_response(orjson.dumps(as_list(items, None)), keep)[0])["items"]
    chunks = [items[i : i + upstream_page] for i in range(0, len(items), upstream_page)] or [[]]

    def upstream(index: int) -> tuple[Page, str | None]:
        following = str(index + 1) if index + 1 < len(chunks) else None
        doc = as_list(chunks[index], None)
        if following is not None:
            doc["metadata"]["continue"] = following
        return split_page(orjson.dumps(doc), keep, keep.fields), following

    shape = Shape("application/json", False, False, None, False)
    answered: list[Any] = []
    position: Position | None = None
    for _ in range(len(items) + 2):  # every client page moves on, so this bounds the loop
        pager = ListPager(parse_query(""), keep, shape, position, upstream_page, limit, 1 << 30)
        step: Read | Answer = pager.start()
        while isinstance(step, Read):
            step = pager.feed(*upstream(int(step.following or 0)))
        assert len(step.entries) <= limit
        answered += step.entries
        position = step.resume
        if position is None:
            break
    assert answered == whole
