"""Objects kept as bytes and answers assembled from them: what a client decodes is exactly the
API server's shape (list items without kind and apiVersion, objects and Table rows with them),
and pages over any limit cover the caller's objects once each, in name order.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tenant_proxy.filtering.objects import everything, partial_metadata
from tenant_proxy.watchcache.listing import (
    list_bytes,
    object_body,
    page_of,
    shown,
    table_body,
    table_row,
)
from tenant_proxy.watchcache.replay import Side
from tenant_proxy.watchcache.stored import Stored

TEAMS = ["red", "blue"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.text(max_size=8))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def pv(name: str, team: str, rv: int, spec: Any = None) -> dict[str, Any]:
    return {
        "kind": "PersistentVolume",
        "apiVersion": "v1",
        "metadata": {"name": name, "labels": {"team": team}, "resourceVersion": str(rv)},
        "spec": spec if spec is not None else {"capacity": {"storage": "1Gi"}},
    }


def stored(obj: dict[str, Any]) -> Stored:
    """Kept as the cache keeps it: judged on a projection (name and labels), not the object."""
    meta = obj["metadata"]
    return Stored.of(obj, {"metadata": {"name": meta["name"], "labels": meta["labels"]}})


def bare(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


@given(spec=values, rv=st.integers(1, 2**40))
def test_a_stored_object_decodes_to_what_was_received(spec: Any, rv: int) -> None:
    obj = pv("pv-1", "red", rv, spec)
    kept = stored(obj)
    assert kept.decoded() == obj
    assert orjson.loads(kept.whole()) == obj
    assert orjson.loads(kept.raw) == bare(obj)  # a list item: no kind, no apiVersion
    assert kept.rv == rv
    assert kept.name == "pv-1"
    assert kept == Stored.of(obj)
    assert kept == obj


def test_an_object_without_fields_of_its_own_keeps_its_kind() -> None:
    kept = Stored.of({"kind": "Thing", "apiVersion": "v1"})
    assert orjson.loads(kept.whole()) == {"kind": "Thing", "apiVersion": "v1"}


def list_body(
    kind: str,
    api_version: str,
    items: list[Any],
    rv: int,
    continue_token: str | None,
    metadata_only: bool,
) -> dict[str, Any]:
    """The oracle: a list as the API server writes it, built from decoded objects."""
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if continue_token:
        meta["continue"] = continue_token
    decoded = [dict(o) for o in items]
    if metadata_only:
        return {
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": meta,
            "items": [partial_metadata(o) for o in decoded],
        }
    bare = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in decoded]
    return {"kind": f"{kind}List", "apiVersion": api_version, "metadata": meta, "items": bare}


@given(specs=st.lists(values, max_size=5), token=st.one_of(st.none(), st.text(max_size=10)))
def test_a_list_body_is_the_api_servers_list(specs: list[Any], token: str | None) -> None:
    objs = [pv(f"pv-{i}", "red", 10 + i, spec) for i, spec in enumerate(specs)]
    items = [stored(o) for o in objs]
    meta: dict[str, Any] = {"resourceVersion": "42", **({"continue": token} if token else {})}

    body = orjson.loads(list_bytes("PersistentVolume", "v1", items, 42, token, False))
    assert body == list_body("PersistentVolume", "v1", items, 42, token, False)
    assert body == list_body("PersistentVolume", "v1", objs, 42, token, False)
    assert body == {
        "kind": "PersistentVolumeList",
        "apiVersion": "v1",
        "metadata": meta,
        "items": [bare(o) for o in objs],
    }
    partial = orjson.loads(list_bytes("PersistentVolume", "v1", items, 42, token, True))
    assert partial == list_body("PersistentVolume", "v1", objs, 42, token, True)
    assert partial == {
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "items": [partial_metadata(o) for o in objs],
    }


def test_a_table_is_assembled_from_rows_with_their_objects_as_asked() -> None:
    obj = pv("pv-1", "red", 7)
    kept = stored(obj)
    rows = [
        table_row(["pv-1", "1Gi"], shown(kept, False)),
        table_row(["pv-1", "1Gi"], shown(kept, True)),
        table_row(["pv-1", "1Gi"], shown(None, False)),
        table_row(["pv-1", "1Gi"], shown(obj, False)),  # a decoded object (a watch's)
        table_row(["pv-1", "1Gi"], shown(obj, True)),
    ]
    table = orjson.loads(table_body([{"name": "Name"}], rows, 9, "tok"))
    assert table == {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "9", "continue": "tok"},
        "columnDefinitions": [{"name": "Name"}],
        "rows": [
            {"cells": ["pv-1", "1Gi"], "object": obj},
            {"cells": ["pv-1", "1Gi"], "object": partial_metadata(obj)},
            {"cells": ["pv-1", "1Gi"], "object": None},
            {"cells": ["pv-1", "1Gi"], "object": obj},
            {"cells": ["pv-1", "1Gi"], "object": partial_metadata(obj)},
        ],
    }
    later = orjson.loads(table_body(None, rows[:1], 9, None))  # a watch's later event
    assert later["columnDefinitions"] is None
    assert later["metadata"] == {"resourceVersion": "9"}
    assert orjson.loads(object_body(kept, False)) == obj
    assert orjson.loads(object_body(kept, True)) == partial_metadata(obj)


@settings(max_examples=200, deadline=None)
@given(
    teams=st.lists(st.sampled_from(TEAMS), max_size=30),
    limit=st.integers(1, 7),
)
def test_pages_cover_the_callers_objects_once_each_in_name_order(
    teams: list[str], limit: int
) -> None:
    state = {f"o-{i:03d}": stored(pv(f"o-{i:03d}", t, i + 1)) for i, t in enumerate(teams)}
    side = Side("red", lambda o: o["metadata"]["labels"]["team"] == "red")
    names = sorted(state)
    seen: list[str] = []
    after = ""
    while True:
        items, last = page_of(state, names, side, everything, after, limit)
        assert len(items) <= limit
        seen += [o.name for o in items]
        if last is None:
            break
        assert last == items[-1].name
        after = last
    assert seen == [n for n in names if state[n].view["metadata"]["labels"]["team"] == "red"]
