"""The names a side owns in a timeline, kept in step with it (`listing.OwnedNames`): after any
run of changes, re-lists, tenancy entries and window trims, exactly the names a fresh judgement
of every current object gives, in name order; and a page judged on them is the page the side
would have judged object by object."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tenant_proxy.filtering.objects import everything
from tenant_proxy.watchcache.listing import OwnedNames, page_of
from tenant_proxy.watchcache.replay import Side
from tenant_proxy.watchcache.stored import Stored
from tenant_proxy.watchcache.timeline import Timeline

NAMES = [f"pv-{i}" for i in range(8)]
TEAMS = ["red", "blue", "green"]


def kept(name: str, team: str, rv: int) -> Stored:
    obj = {"metadata": {"name": name, "labels": {"team": team}, "resourceVersion": str(rv)}}
    return Stored.of(obj, {"metadata": {"name": name, "labels": {"team": team}}})


def red(obj: Any) -> bool:
    return bool(obj["metadata"]["labels"].get("team") == "red")


RED = Side("red", red)

steps = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(NAMES), st.sampled_from(TEAMS)),
        st.tuples(st.just("delete"), st.sampled_from(NAMES), st.just("")),
        st.tuples(st.just("tenancy"), st.just(""), st.just("")),
        st.tuples(st.just("relist"), st.just(""), st.sampled_from(TEAMS)),
        st.tuples(st.just("read"), st.just(""), st.just("")),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(steps=steps, window=st.integers(1, 6))
def test_owned_names_follow_the_timeline(steps: list[tuple[str, str, str]], window: int) -> None:
    timeline: Timeline[int] = Timeline({}, 1, 0, max_entries=window)
    owned = OwnedNames(red)
    rv = 1

    def check() -> None:
        expected = sorted(k for k, o in timeline.objects.items() if red(o.view))
        assert owned.names(timeline) == expected
        # A page over the judged names is the page judged object by object, first or next.
        every = sorted(timeline.objects)
        for after in ("", *every[:3]):
            for limit in (None, 1, 3):
                judged = page_of(
                    timeline.objects, expected, RED, everything, after, limit, judged=True
                )
                assert judged == page_of(timeline.objects, every, RED, everything, after, limit)

    check()
    for op, name, team in steps:
        rv += 1
        if op == "put":
            timeline.change(name, kept(name, team, rv), rv)
        elif op == "delete":
            timeline.change(name, None, rv)
        elif op == "tenancy":
            timeline.retarget(rv, rv)
        elif op == "relist":
            # Every object of one team, the rest gone: a re-list's difference.
            fresh = {n: kept(n, team, rv) for n in NAMES[::2]}
            timeline.replace_all(fresh, rv, {n: rv for n in fresh})
        else:
            check()
    check()


def test_a_new_timeline_is_judged_afresh() -> None:
    owned = OwnedNames(red)
    first: Timeline[int] = Timeline({"pv-0": kept("pv-0", "red", 1)}, 1, 0)
    assert owned.names(first) == ["pv-0"]
    second: Timeline[int] = Timeline({"pv-1": kept("pv-1", "red", 2)}, 2, 0)
    assert owned.names(second) == ["pv-1"]
