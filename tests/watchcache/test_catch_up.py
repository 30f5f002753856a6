"""`replay.catch_up`: a watch resumed across a change of the caller's own view goes straight
from what it holds to what it may see now, naming nothing else (a list at its version is
judged by then *and* now; the watch may not show more than that list would).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.filtering.objects import everything
from tenant_proxy.watchcache.replay import ADDED, DELETED, MODIFIED, Side, catch_up, view_moved
from tenant_proxy.watchcache.stored import Stored

NAMES = ["a", "b", "c", "d", "e"]
TEAMS = ["red", "blue", "green"]


def thing(name: str, team: str, rv: int) -> Stored:
    return Stored.of(
        {"metadata": {"name": name, "labels": {"team": team}, "resourceVersion": str(rv)}}
    )


def side(teams: frozenset[str]) -> Side | None:
    if not teams:
        return None
    return Side(teams, lambda o: o["metadata"]["labels"]["team"] in teams)


def team(obj: Stored) -> str:
    labels: Mapping[str, Any] = obj.decoded()["metadata"]["labels"]
    return str(labels["team"])


STATES = st.dictionaries(
    st.sampled_from(NAMES),
    st.tuples(st.sampled_from(TEAMS), st.integers(1, 3)),
)
SIDES = st.frozensets(st.sampled_from(TEAMS))


@given(then=STATES, now=STATES, held_teams=SIDES, now_teams=SIDES)
def test_the_client_ends_with_exactly_what_it_may_see_now_and_hears_of_nothing_else(
    then: dict[str, tuple[str, int]],
    now: dict[str, tuple[str, int]],
    held_teams: frozenset[str],
    now_teams: frozenset[str],
) -> None:
    held_state = {k: thing(k, t, rv) for k, (t, rv) in then.items()}
    # An object unchanged keeps its very Stored (the cache shares it), changed ones are new.
    state = {
        k: held_state[k] if then.get(k) == v else thing(k, v[0], v[1] + 10) for k, v in now.items()
    }
    held = {k for k, o in held_state.items() if team(o) in held_teams}
    target = {k for k, o in state.items() if team(o) in now_teams}
    client = set(held)
    named: list[str] = []
    for out in catch_up(held_state, side(held_teams), state, side(now_teams), everything, 99):
        name = out.obj["metadata"]["name"]
        named.append(name)
        if out.type == ADDED:
            assert name not in client
            assert team(state[name]) in now_teams
            client.add(name)
        elif out.type == MODIFIED:
            assert name in client
            assert out.obj == state[name].decoded()
        else:
            assert out.type == DELETED
            assert name in client
            assert out.obj == held_state[name].decoded()  # as the client held it
            assert out.stamp == 99
            client.discard(name)
    assert client == target
    assert len(named) == len(set(named))  # each object once
    assert set(named) <= held | target  # nothing it neither held nor may see now


def test_view_moved_compares_rules_not_identity() -> None:
    red = side(frozenset({"red"}))
    assert not view_moved([side(frozenset({"red"})), red], red)
    assert view_moved([side(frozenset({"red"})), side(frozenset({"blue"}))], red)
    assert view_moved([None], red)
    assert not view_moved([None, None], None)
