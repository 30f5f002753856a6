"""Watch filtering: the client's picture always equals upstream's objects the caller may see."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tenant_proxy.filtering.watch import LineFramer, LineTooLong, WatchFilter

Events = Callable[[str], list[dict[str, Any]]]
TENANT_LABEL = "example.com/tenant"
COLUMNS = [{"name": "Name", "type": "string"}, {"name": "Tier", "type": "string"}]


def labelled(value: str) -> Callable[[Mapping[str, Any]], bool]:
    return lambda obj: obj["metadata"].get("labels", {}).get(TENANT_LABEL) == value


def allowed(values: frozenset[str]) -> Callable[[Mapping[str, Any]], bool]:
    return lambda obj: obj["metadata"]["labels"]["tier"] in values


def obj(name: str, tier: str, rv: int) -> dict[str, Any]:
    return {
        "kind": "Widget",
        "metadata": {"name": name, "resourceVersion": str(rv), "labels": {"tier": tier}},
    }


def as_table(kind: str, item: dict[str, Any], first: bool) -> dict[str, Any]:
    meta = item["metadata"]
    row = {"cells": [meta["name"], meta["labels"]["tier"]], "object": item}
    table = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": meta["resourceVersion"]},
        "columnDefinitions": COLUMNS if first else None,
        "rows": [row],
    }
    return {"type": kind, "object": table}


class Client:
    """What a client (an informer, kubectl -w) believes exists, replaying what it receives."""

    def __init__(self, table: bool) -> None:
        self.table = table
        self.state: dict[str, Any] = {}
        self.received = 0

    def receive(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self.received += 1
            if event["type"] in ("BOOKMARK", "ERROR"):
                continue
            for name, state in self.items(event["object"]):
                present = name in self.state
                if event["type"] == "ADDED":
                    assert not present, f"ADDED for {name} the client already has"
                    self.state[name] = state
                elif event["type"] == "MODIFIED":
                    assert present, f"MODIFIED for {name} the client never got"
                    self.state[name] = state
                else:
                    assert present, f"DELETED for {name} the client never got"
                    del self.state[name]

    def items(self, o: dict[str, Any]) -> list[tuple[str, Any]]:
        if not self.table:
            return [(o["metadata"]["name"], o["metadata"]["labels"]["tier"])]
        assert o["columnDefinitions"] == (COLUMNS if self.received == 1 else None)
        return [(r["cells"][0], r["cells"][1]) for r in o["rows"]]


operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from("abc"), st.sampled_from(["x", "y"])),
        st.tuples(st.just("delete"), st.sampled_from("abc")),
        st.tuples(st.just("retarget"), st.frozensets(st.sampled_from(["x", "y"]))),
        st.tuples(st.just("deliver")),
        st.tuples(st.just("bookmark")),
    ),
    max_size=40,
)


@pytest.mark.parametrize("remember_hidden", [True, False], ids=["remember", "forget"])
@pytest.mark.parametrize("table", [False, True], ids=["json", "table"])
@settings(max_examples=150)
@given(ops=operations, initial=st.frozensets(st.sampled_from(["x", "y"])))
@example(  # a read raced by a change that hides the object again
    ops=[("put", "a", "y"), ("retarget", frozenset("y")), ("put", "a", "x"), ("deliver",)],
    initial=frozenset("x"),
)
def test_client_sees_exactly_the_upstream_objects_keep_accepts(
    table: bool, remember_hidden: bool, ops: list[tuple[Any, ...]], initial: frozenset[str]
) -> None:
    """Tenancy changes are followed by reads (GETs) of objects the filter does not hold; those
    reads may be delivered after later stream events (stale). At every step the client holds
    only current, visible states; once the reads are delivered it holds all of them."""
    upstream: dict[str, dict[str, Any]] = {}
    values, first = initial, True
    watch = WatchFilter(allowed(values), remember_hidden=remember_hidden)
    client = Client(table)
    pending: list[dict[str, Any]] = []

    def send(kind: str, item: dict[str, Any]) -> None:
        nonlocal first
        event = as_table(kind, item, first) if table else {"type": kind, "object": item}
        first = False
        client.receive(watch.feed(copy.deepcopy(event)))

    def deliver() -> None:
        nonlocal first
        for item in pending:
            fetched = as_table("ADDED", item, first)["object"] if table else item
            events = watch.add_fetched(copy.deepcopy(fetched))
            first = first and not events
            client.receive(events)
        pending.clear()
        watch.end_fetches()

    for rv, op in enumerate(ops, start=1):
        if op[0] == "put":
            kind = "MODIFIED" if op[1] in upstream else "ADDED"
            upstream[op[1]] = obj(op[1], op[2], rv)
            send(kind, upstream[op[1]])
        elif op[0] == "delete" and op[1] in upstream:
            send("DELETED", upstream.pop(op[1]))
        elif op[0] == "retarget":
            deliver()  # one fetch window at a time, as the proxy runs them
            values = op[1]
            client.receive(watch.retarget(allowed(values)))
            known = {name for _, name in watch.known_keys()}
            pending += [copy.deepcopy(o) for n, o in upstream.items() if n not in known]
        elif op[0] == "deliver":
            deliver()
        elif op[0] == "bookmark":
            bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": str(rv)}}}
            assert watch.feed(bookmark) == [bookmark]
        visible = {
            n: o["metadata"]["labels"]["tier"]
            for n, o in upstream.items()
            if o["metadata"]["labels"]["tier"] in values
        }
        assert client.state.items() <= visible.items(), "stale or foreign state shown"
        if not pending:
            assert client.state == visible
        if not remember_hidden:
            assert watch.known_keys() == watch.visible_keys()


def test_a_read_raced_by_the_stream_does_not_bring_back_a_stale_state() -> None:
    watch = WatchFilter(allowed(frozenset({"x"})), remember_hidden=False)
    assert watch.feed({"type": "ADDED", "object": obj("a", "y", 1)}) == []
    assert watch.retarget(allowed(frozenset({"y"}))) == []  # a is not held: the proxy GETs it
    snapshot = obj("a", "y", 1)
    assert watch.feed({"type": "MODIFIED", "object": obj("a", "x", 2)}) == []  # left meanwhile
    assert watch.add_fetched(snapshot) == []
    watch.end_fetches()
    assert watch.visible_keys() == set()


def test_a_read_is_added_once_and_only_inside_a_fetch_window() -> None:
    watch = WatchFilter(allowed(frozenset({"x"})), remember_hidden=False)
    watch.feed({"type": "ADDED", "object": obj("a", "y", 1)})
    assert watch.add_fetched(obj("a", "y", 1)) == []  # no retarget: no window
    watch.retarget(allowed(frozenset({"y"})))
    assert [e["type"] for e in watch.add_fetched(obj("a", "y", 1))] == ["ADDED"]
    assert watch.add_fetched(obj("a", "y", 1)) == []
    watch.end_fetches()
    assert watch.visible_keys() == {("", "a")}


def test_an_object_leaving_the_set_is_deleted_with_its_last_seen_state(events: Events) -> None:
    # The recorded stream is the server's own answer to labelSelector tenant=team-a; rebuild
    # the unfiltered stream behind it and check we answer exactly as the server did.
    recorded = events("watch-namespaces-selector-transitions")
    relabelled = copy.deepcopy(recorded[1]["object"])
    relabelled["metadata"]["labels"][TENANT_LABEL] = "team-b"
    upstream = [
        recorded[0],
        {"type": "MODIFIED", "object": relabelled},
        {"type": "MODIFIED", "object": recorded[2]["object"]},
        *recorded[3:],
    ]
    watch = WatchFilter(labelled("team-a"))
    sent = [e for event in upstream for e in watch.feed(copy.deepcopy(event))]
    assert sent == recorded


def test_first_table_event_carries_columns_when_upstreams_first_was_dropped(
    events: Events,
) -> None:
    recorded = events("watch-namespaces-table")
    watch = WatchFilter(labelled("team-b"))
    sent = [e for event in recorded for e in watch.feed(event)]
    assert [(e["type"], e["object"]["rows"][0]["cells"][0]) for e in sent] == [
        ("ADDED", "team-b-dev"),
        ("ADDED", "team-b-extra"),  # upstream MODIFIED: it just got the tenant's label
    ]
    assert sent[0]["object"]["columnDefinitions"] == recorded[0]["object"]["columnDefinitions"]
    assert sent[1]["object"]["columnDefinitions"] is None


def test_table_watch_for_an_include_none_client_strips_row_objects(events: Events) -> None:
    watch = WatchFilter(labelled("team-a"), strip_objects=True)
    sent = [e for event in events("watch-namespaces-table") for e in watch.feed(event)]
    assert [e["object"]["rows"][0]["object"] for e in sent] == [None, None]


def test_rows_without_objects_are_dropped_and_counted(events: Events) -> None:
    first = copy.deepcopy(events("watch-namespaces-table")[0])
    first["object"]["rows"][0]["object"] = None
    watch = WatchFilter(lambda o: True)
    assert watch.feed(first) == []
    assert watch.dropped == 1


def test_multi_row_table_events_are_split_by_transition() -> None:
    watch = WatchFilter(allowed(frozenset({"x"})))
    table = as_table("ADDED", obj("a", "x", 1), True)
    table["object"]["rows"].append(as_table("ADDED", obj("b", "y", 1), False)["object"]["rows"][0])
    sent = watch.feed(table)
    assert [[r["cells"][0] for r in e["object"]["rows"]] for e in sent] == [["a"]]
    both = as_table("MODIFIED", obj("a", "y", 2), False)
    both["object"]["rows"].append(
        as_table("MODIFIED", obj("b", "x", 2), False)["object"]["rows"][0]
    )
    sent = watch.feed(both)
    assert [(e["type"], e["object"]["rows"][0]["cells"][0]) for e in sent] == [
        ("DELETED", "a"),
        ("ADDED", "b"),
    ]


def test_pv_bound_into_a_tenant_namespace_is_added(events: Events) -> None:
    def claimed_in_team_a(pv: Mapping[str, Any]) -> bool:
        return (pv["spec"].get("claimRef") or {}).get("namespace") == "team-a-prod"

    watch = WatchFilter(claimed_in_team_a, metadata_only=True)
    sent = [e for event in events("watch-pv-json") for e in watch.feed(event)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in sent] == [("ADDED", "pv-unbound")]
    assert sent[0]["object"]["kind"] == "PartialObjectMetadata"


def test_retarget_adds_objects_already_streamed_and_removes_those_no_longer_visible() -> None:
    watch = WatchFilter(allowed(frozenset({"x"})))
    assert len(watch.feed({"type": "ADDED", "object": obj("a", "x", 1)})) == 1
    assert watch.feed({"type": "ADDED", "object": obj("b", "y", 2)}) == []
    sent = watch.retarget(allowed(frozenset({"y"})))
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in sent] == [
        ("DELETED", "a"),
        ("ADDED", "b"),
    ]
    assert watch.visible_keys() == {("", "b")}


@pytest.mark.parametrize(
    "event",
    [
        {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}},
        {
            "type": "BOOKMARK",
            "object": {
                "kind": "Namespace",
                "metadata": {
                    "resourceVersion": "300",
                    "annotations": {"k8s.io/initial-events-end": "true"},
                },
            },
        },
    ],
)
def test_bookmarks_and_errors_always_pass_unchanged(event: dict[str, Any]) -> None:
    watch = WatchFilter(lambda o: False)
    assert watch.feed(event) == [event]


@pytest.mark.parametrize(
    "event",
    [
        {"type": "WEIRD", "object": {"metadata": {"name": "a"}}},
        {"type": "ADDED", "object": None},
        {"type": "ADDED", "object": {"metadata": {}}},
        {"type": "ADDED"},
    ],
)
def test_unreadable_events_are_dropped_not_passed(event: dict[str, Any]) -> None:
    watch = WatchFilter(lambda o: True)
    assert watch.feed(event) == []
    assert watch.dropped == 1


@given(
    st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=8),
    st.lists(st.integers(1, 20), min_size=1, max_size=10),
)
def test_line_framer_yields_the_lines_whatever_the_chunking(
    lines: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    framer, out, i, k = LineFramer(max_line=64), [], 0, 0
    while i < len(stream):
        out += framer.feed(stream[i : i + cuts[k % len(cuts)]])
        i += cuts[k % len(cuts)]
        k += 1
    assert out == [line for line in lines if line.strip()]
    assert framer.finish() is None


def test_line_framer_refuses_a_line_over_the_limit_even_without_newline() -> None:
    framer = LineFramer(max_line=10)
    assert framer.feed(b"0123456789") == []
    with pytest.raises(LineTooLong):
        framer.feed(b"x")
    with pytest.raises(LineTooLong):
        LineFramer(max_line=10).feed(b"short\n" + b"y" * 11 + b"\nz")


def test_line_framer_returns_a_final_unterminated_line() -> None:
    framer = LineFramer(max_line=100)
    assert framer.feed(orjson.dumps({"type": "ADDED"}) + b'\n{"type"') == [b'{"type":"ADDED"}']
    assert framer.feed(b': "ERROR"}') == []
    assert framer.finish() == b'{"type": "ERROR"}'


def test_known_keys_cover_filtered_out_objects_until_deleted() -> None:
    watch = WatchFilter(allowed(frozenset({"x"})))
    watch.feed({"type": "ADDED", "object": obj("a", "x", 1)})
    watch.feed({"type": "ADDED", "object": obj("b", "y", 2)})
    assert watch.known_keys() == {("", "a"), ("", "b")}
    assert watch.visible_keys() == {("", "a")}
    watch.feed({"type": "DELETED", "object": obj("b", "y", 3)})
    assert watch.known_keys() == {("", "a")}


def test_the_same_state_twice_is_sent_once_and_a_repeated_added_becomes_modified() -> None:
    wf = WatchFilter(allowed(frozenset({"a"})))
    first = wf.feed({"type": "ADDED", "object": obj("x", "a", 5)})
    assert [e["type"] for e in first] == ["ADDED"]
    # A fetch and the stream crossing deliver the state the client already has: nothing new.
    assert wf.feed({"type": "ADDED", "object": obj("x", "a", 5)}) == []
    assert wf.feed({"type": "MODIFIED", "object": obj("x", "a", 5)}) == []
    # A newer state announced as ADDED (a re-list upstream) is a change to what the client has.
    again = wf.feed({"type": "ADDED", "object": obj("x", "a", 6)})
    assert [e["type"] for e in again] == ["MODIFIED"]
