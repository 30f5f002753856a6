"""Open watches follow tenancy changes: the issue's four transitions, on recorded objects."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from tenant_proxy.filtering.watch import WatchFilter
from tenant_proxy.tenancy.model import (
    NAMESPACES,
    PERSISTENT_VOLUMES,
    ClaimNamespaceRule,
    GroupResource,
    Members,
    Tenant,
    owns,
    view_for,
)

Body = Callable[[str], dict[str, Any]]
LABEL = "example.com/tenant"
RULES = {PERSISTENT_VOLUMES: ClaimNamespaceRule()}


@dataclass(frozen=True)
class Caller:
    user: str
    groups: tuple[str, ...] = ()


ALICE = Caller("alice", ("tenant-a-devs",))
BOB = Caller("bob", ("tenant-b-devs",))


def team(name: str, group: str, namespaces: frozenset[str] = frozenset()) -> Tenant:
    return Tenant(name, Members(groups=frozenset({group})), namespaces=namespaces, rules=RULES)


TEAM_A = team("team-a", "tenant-a-devs")
TEAM_B = team("team-b", "tenant-b-devs")


def owner_from_labels(namespaces: list[dict[str, Any]]) -> dict[str, str]:
    """What the index derives from namespace labels."""
    return {
        n["metadata"]["name"]: n["metadata"]["labels"][LABEL]
        for n in namespaces
        if LABEL in n["metadata"].get("labels", {})
    }


def keep_for(
    caller: Caller, tenants: list[Tenant], owner: Mapping[str, str], gr: GroupResource
) -> Callable[[Mapping[str, Any]], bool]:
    view = view_for(caller, tenants, owner)
    return lambda obj: view is not None and owns(view, gr, obj)


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"]["name"]) for e in events]


def initial(watch: WatchFilter, items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return summary([e for i in items for e in watch.feed({"type": "ADDED", "object": i})])


@pytest.mark.parametrize("stream_first", [True, False], ids=["stream-first", "index-first"])
def test_relabelling_a_namespace_moves_it_from_one_tenant_to_the_other(
    body: Body, stream_first: bool
) -> None:
    namespaces = body("list-namespaces-json")["items"]
    owner = owner_from_labels(namespaces)
    tenants = [TEAM_A, TEAM_B]
    alice = WatchFilter(keep_for(ALICE, tenants, owner, NAMESPACES))
    bob = WatchFilter(keep_for(BOB, tenants, owner, NAMESPACES))
    assert initial(alice, namespaces) == [("ADDED", "team-a-dev"), ("ADDED", "team-a-prod")]
    assert initial(bob, namespaces) == [("ADDED", "team-b-dev")]

    moved = copy.deepcopy(next(n for n in namespaces if n["metadata"]["name"] == "team-a-prod"))
    moved["metadata"]["labels"][LABEL] = "team-b"
    moved["metadata"]["resourceVersion"] = "999"
    new_owner = {**owner, "team-a-prod": "team-b"}
    event = {"type": "MODIFIED", "object": moved}

    def stream(w: WatchFilter) -> list[dict[str, Any]]:
        return w.feed(copy.deepcopy(event))

    def index(w: WatchFilter, caller: Caller) -> list[dict[str, Any]]:
        return w.retarget(keep_for(caller, tenants, new_owner, NAMESPACES))

    if stream_first:
        got_alice = stream(alice) + index(alice, ALICE)
        got_bob = stream(bob) + index(bob, BOB)
    else:
        got_alice = index(alice, ALICE) + stream(alice)
        got_bob = index(bob, BOB) + stream(bob)
    # Stream first, alice may see the relabel as MODIFIED before the index moves the namespace
    # (two upstream watches race); either way it ends DELETED for her, and bob gets it ADDED
    # once (then MODIFIED to the relabelled state when the index was first).
    assert [t for t, n in summary(got_alice) if n == "team-a-prod"][-1] == "DELETED"
    expected_bob = ["ADDED"] if stream_first else ["ADDED", "MODIFIED"]
    assert [t for t, n in summary(got_bob) if n == "team-a-prod"] == expected_bob
    assert got_bob[-1]["object"]["metadata"]["resourceVersion"] == "999"
    assert alice.visible_keys() == {("", "team-a-dev")}
    assert bob.visible_keys() == {("", "team-b-dev"), ("", "team-a-prod")}


def test_binding_an_unbound_pv_into_a_tenant_namespace_adds_it_there_only(body: Body) -> None:
    pvs = body("list-pv-json")["items"]
    owner = {"team-a-dev": "team-a", "team-a-prod": "team-a", "team-b-dev": "team-b"}
    alice = WatchFilter(keep_for(ALICE, [TEAM_A, TEAM_B], owner, PERSISTENT_VOLUMES))
    bob = WatchFilter(keep_for(BOB, [TEAM_A, TEAM_B], owner, PERSISTENT_VOLUMES))
    assert initial(alice, pvs) == [("ADDED", "pv-a-data")]
    assert initial(bob, pvs) == [("ADDED", "pv-b-data")]
    bound = copy.deepcopy(next(p for p in pvs if p["metadata"]["name"] == "pv-unbound"))
    bound["spec"]["claimRef"] = {"namespace": "team-a-prod", "name": "logs"}
    assert summary(alice.feed({"type": "MODIFIED", "object": bound})) == [("ADDED", "pv-unbound")]
    assert bob.feed({"type": "MODIFIED", "object": bound}) == []


@pytest.mark.parametrize("remember_hidden", [True, False])
def test_adding_a_namespace_to_a_tenant_shows_its_volumes(
    body: Body, remember_hidden: bool
) -> None:
    pvs = body("list-pv-json")["items"]
    owner = {"team-a-dev": "team-a"}
    alice = WatchFilter(
        keep_for(ALICE, [TEAM_A], owner, PERSISTENT_VOLUMES), remember_hidden=remember_hidden
    )
    assert initial(alice, pvs) == [("ADDED", "pv-a-data")]
    widened = [team("team-a", "tenant-a-devs", frozenset({"team-b-dev"}))]
    keep = keep_for(ALICE, widened, owner, PERSISTENT_VOLUMES)
    sent = alice.retarget(keep)
    # Objects the filter does not hold are read by the proxy and handed over (the index knows
    # which names to read).
    for pv in pvs:
        if ("", pv["metadata"]["name"]) not in alice.known_keys():
            sent += alice.add_fetched(copy.deepcopy(pv))
    alice.end_fetches()
    assert summary(sent) == [("ADDED", "pv-b-data")]


def test_removing_a_member_deletes_everything_it_was_shown(body: Body) -> None:
    namespaces = body("list-namespaces-json")["items"]
    owner = owner_from_labels(namespaces)
    alice = WatchFilter(keep_for(ALICE, [TEAM_A], owner, NAMESPACES))
    initial(alice, namespaces)
    without_alice = [Tenant("team-a", Members(groups=frozenset({"someone-else"})))]
    sent = alice.retarget(keep_for(ALICE, without_alice, owner, NAMESPACES))
    assert summary(sent) == [("DELETED", "team-a-dev"), ("DELETED", "team-a-prod")]
    assert alice.visible_keys() == set()
    update = copy.deepcopy(namespaces[-1])
    assert alice.feed({"type": "MODIFIED", "object": update}) == []
