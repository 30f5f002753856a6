"""Two clients holding the same resourceVersion from either side of a late entry (found by
review h21).

A tenancy change that reaches a timeline without a version past its head (a config reload) is
ordered just after the head, (head.rv, sub + 1): a client given head.rv before it and one given
it after hold the same number. A watch from it starts at the earliest point it was given, so the
first client hears the change (the second gets it again: a duplicate, never a miss).
"""

from __future__ import annotations

from typing import Any

import pytest
from cluster import Cluster
from test_watch_quiet_reload import STORAGE_CLASSES, reload_team_a_storage_classes
from watching import Watch, name_of, session_as

from tenant_proxy.demo import Demo

pytestmark = [pytest.mark.e2e, pytest.mark.emulator_only]


def storage_class(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": "example.com/fake",
    }


async def _listed(session: Any) -> tuple[set[str], str]:
    async with session.get(STORAGE_CLASSES) as resp:
        assert resp.status == 200, await resp.text()
        doc = await resp.json()
    return {o["metadata"]["name"] for o in doc["items"]}, doc["metadata"]["resourceVersion"]


async def test_a_watch_from_a_list_before_a_reload_hears_the_reload(
    demo: Demo, cluster: Cluster
) -> None:
    assert demo.proxy is not None
    # An entry, so the reload below is recorded (not folded into the timeline's base).
    await cluster.create(storage_class("platinum"))
    async with (
        session_as(demo, "alice", ["tenant-a-devs"]) as alice,
        session_as(demo, "bob", ["tenant-b-devs"]) as bob,
    ):
        held, rv = await _listed(alice)
        assert held == {"gold"}
        reload_team_a_storage_classes(demo.proxy, ["silver"])
        # Any later answer at the same version (here bob's list) marks where it was handed.
        _, bobs = await _listed(bob)
        assert await _listed(alice) == ({"silver"}, bobs)
        query = f"watch=1&allowWatchBookmarks=true&resourceVersion={rv}"
        async with alice.get(f"{STORAGE_CLASSES}?{query}") as resp:
            assert resp.status == 200
            watch = Watch(resp)
            # The watch's first bookmark, then its events, else a second later an idle one.
            events = [await watch.next() for _ in range(3)]
        # alice holds gold: the reload must take it away, and give silver.
        shown = [(e["type"], name_of(e)) for e in events if e["type"] != "BOOKMARK"]
        assert shown[:2] == [("DELETED", "gold"), ("ADDED", "silver")], events
