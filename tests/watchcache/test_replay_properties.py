"""The watch cache's pure core against an oracle: any history of object changes and tenancy
changes, any client that lists at some point, watches from the list's resourceVersion, drops
the connection anywhere and resumes from the last resourceVersion it saw (event or bookmark),
ends up holding exactly what its view shows now, and never receives a foreign object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenant_proxy.watchcache.replay import ADDED, DELETED, MODIFIED, Side, events_for, initial
from tenant_proxy.watchcache.timeline import Timeline, TooOld

NAMES = ["a", "b", "c", "d"]
TEAMS = ["red", "blue", "none"]


def obj(name: str, team: str, rv: int) -> dict[str, Any]:
    return {
        "kind": "Thing",
        "apiVersion": "v1",
        "metadata": {"name": name, "labels": {"team": team}, "resourceVersion": str(rv)},
    }


@dataclass(frozen=True)
class Tenancy:
    """A stand-in for a tenancy snapshot: the teams the caller sees."""

    teams: frozenset[str]


def side(t: Tenancy) -> Side | None:
    if not t.teams:
        return None
    return Side(t.teams, lambda o: o["metadata"]["labels"]["team"] in t.teams)


def selected(_o: Mapping[str, Any]) -> bool:
    return True


# How a tenancy change reaches the timeline: with the next change of this very resource (a
# namespace relabelled: one entry), from another resource's event (its own, newer rv), or
# with no rv to order it by (a config reload) or an older one (a stream that lagged).
INLINE, OTHER, UNORDERED = "inline", "other", "unordered"


def ops(tenancy_modes: list[str]) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    """("put", name, team) | ("delete", name) | ("tenancy", teams, mode)"""
    return st.lists(
        st.one_of(
            st.tuples(st.just("put"), st.sampled_from(NAMES), st.sampled_from(TEAMS)),
            st.tuples(st.just("delete"), st.sampled_from(NAMES)),
            st.tuples(
                st.just("tenancy"),
                st.frozensets(st.sampled_from(TEAMS[:2])),
                st.sampled_from(tenancy_modes),
            ),
        ),
        max_size=30,
    )


def build(history: list[tuple[Any, ...]], list_at: int) -> tuple[Timeline[Tenancy], int, int]:
    """Apply `history`; returns the timeline, and the seq and rv at which the client listed
    (after `list_at` operations)."""
    timeline: Timeline[Tenancy] = Timeline({}, 1, Tenancy(frozenset({"red"})))
    rv = 1
    pending: Tenancy | None = None
    list_point = (timeline.end, timeline.head.rv)
    for i, op in enumerate(history):
        if i == list_at:
            list_point = (timeline.end, timeline.hand_out(timeline.end))
        if op[0] == "tenancy":
            if op[2] == INLINE:
                pending = Tenancy(op[1])
            elif op[2] == OTHER:
                rv += 1  # the other resource's event took a revision of its own
                timeline.retarget(Tenancy(op[1]), rv)
            else:
                timeline.retarget(Tenancy(op[1]), None)
            continue
        rv += 1
        name = op[1]
        cur = obj(name, op[2], rv) if op[0] == "put" else None
        if cur is None and name not in timeline.objects and pending is None:
            continue
        timeline.change(name, cur, rv, tenancy=pending)
        pending = None
    if list_at >= len(history):
        list_point = (timeline.end, timeline.hand_out(timeline.end))
    return timeline, list_point[0], list_point[1]


class Client:
    """What a client-go reflector keeps: its store and the last resourceVersion seen."""

    def __init__(self, listed: dict[str, Mapping[str, Any]], rv: int, strict: bool) -> None:
        self.store = dict(listed)
        self.rv = rv
        self.strict = strict

    def apply(self, kind: str, o: Mapping[str, Any], stamp: int | None) -> None:
        name = o["metadata"]["name"]
        if not self.strict:
            # client-go applies an ADDED of a held object as an update, a DELETED of an
            # unknown one as nothing: a duplicate costs nothing, a miss is forever.
            if kind == DELETED:
                self.store.pop(name, None)
            else:
                self.store[name] = o
        elif kind == ADDED:
            assert name not in self.store, f"ADDED twice: {name}"
            self.store[name] = o
        elif kind == MODIFIED:
            assert name in self.store, f"MODIFIED before ADDED: {name}"
            self.store[name] = o
        else:
            assert kind == DELETED
            assert name in self.store, f"DELETED unknown: {name}"
            del self.store[name]
        self.rv = stamp if stamp is not None else int(o["metadata"]["resourceVersion"])


def serve(timeline: Timeline[Tenancy], client: Client, stop_after: int | None) -> bool:
    """Replay as the server does from the client's rv; False when the client 'disconnected'
    after `stop_after` entries."""
    cursor = timeline.start_after(client.rv)
    current = side(timeline.tenancy_at(cursor))
    for done, entry in enumerate(list(timeline.entries_from(cursor))):
        if stop_after is not None and done >= stop_after:
            return False
        after = side(entry.tenancy_after)
        outs = events_for(entry, current, after, selected, lambda e=entry: timeline.state_at(e.seq))
        current = after
        older = False
        for out in outs:
            client.apply(out.type, out.obj, out.stamp)
            older = older or (out.type == ADDED and out.stamp is None)
        if older:  # the server's bookmark after objects with older resourceVersions
            client.rv = timeline.hand_out(entry.seq + 1)
    return True


def expected(timeline: Timeline[Tenancy]) -> dict[str, Mapping[str, Any]]:
    now = side(timeline.tenancy)
    return {
        k: o
        for k, o in timeline.objects.items()
        if now is not None and o["metadata"]["labels"]["team"] in now.rules  # type: ignore[operator]
    }


def list_watch_reconnect(
    history: list[tuple[Any, ...]], list_at: int, cuts: list[int], strict: bool
) -> None:
    timeline, seq, rv = build(history, list_at)
    listed = initial(timeline.state_at(seq), side(timeline.tenancy_at(seq)), selected)
    client = Client({o.obj["metadata"]["name"]: o.obj for o in listed}, rv, strict)
    for cut in cuts:
        if serve(timeline, client, cut):
            break
    else:
        serve(timeline, client, None)
    assert client.store == expected(timeline)


@settings(max_examples=300, deadline=None)
@given(
    history=ops([INLINE, OTHER]),
    list_at=st.integers(0, 30),
    cuts=st.lists(st.integers(0, 5), max_size=3),
)
def test_list_then_watch_then_reconnect_ends_in_the_current_view_each_event_once(
    history: list[tuple[Any, ...]], list_at: int, cuts: list[int]
) -> None:
    list_watch_reconnect(history, list_at, cuts, strict=True)


@settings(max_examples=300, deadline=None)
@given(
    history=ops([INLINE, OTHER, UNORDERED]),
    list_at=st.integers(0, 30),
    cuts=st.lists(st.integers(0, 5), max_size=3),
)
def test_tenancy_changes_without_their_own_version_are_never_missed(
    history: list[tuple[Any, ...]], list_at: int, cuts: list[int]
) -> None:
    """A config reload (no resourceVersion) or a change whose stream lagged is ordered just
    after the head: a client that listed or stopped right there may get it twice, never not."""
    list_watch_reconnect(history, list_at, cuts, strict=False)


@settings(max_examples=300, deadline=None)
@given(history=ops([INLINE, OTHER, UNORDERED]), list_at=st.integers(0, 30))
def test_a_watch_from_a_lists_version_gets_each_event_once_whatever_came_late(
    history: list[tuple[Any, ...]], list_at: int
) -> None:
    """A list answered just after late entries hands out a version that remembers where it
    stood: the watch from it neither repeats them nor misses what follows."""
    list_watch_reconnect(history, list_at, [], strict=True)


@settings(max_examples=200, deadline=None)
@given(history=ops([INLINE, OTHER, UNORDERED]))
def test_a_watch_without_resource_version_starts_with_the_view(
    history: list[tuple[Any, ...]],
) -> None:
    timeline, _, _ = build(history, len(history))
    outs = initial(dict(timeline.objects), side(timeline.tenancy), selected)
    assert {o.obj["metadata"]["name"]: o.obj for o in outs} == expected(timeline)
    assert all(o.type == ADDED for o in outs)


def test_a_resource_version_older_than_the_window_is_too_old() -> None:
    timeline: Timeline[Tenancy] = Timeline({}, 10, Tenancy(frozenset({"red"})), max_entries=2)
    for rv in (11, 12, 13):
        timeline.change("a", obj("a", "red", rv), rv)
    assert timeline.floor.rv == 11
    timeline.start_after(11)
    with pytest.raises(TooOld, match=r"too old resource version: 10 \(11\)"):
        timeline.start_after(10)
