"""A watch resumed from an old resourceVersion by a caller whose view has shrunk since (found
by review h21).

A list at an old version is judged by tenancy then *and* now (list_from_cache: "what a caller
may no longer see stays hidden, however old the version it asks for"). A resumed watch replayed
the window with the tenancy of each entry's time alone: objects that came and went while the
client was away, in a namespace another tenant's by the time it asks, were shown to it whole.
Across a change of the caller's own view the watch now goes straight from what the client holds
to what it may see now (`replay.catch_up`).
"""

from __future__ import annotations

from typing import Any

import pytest
from cluster import Cluster, until
from kube_objects import TENANT_LABEL, persistent_volume
from watching import Watch, name_of, session_as

from tenant_proxy.demo import Demo

pytestmark = [pytest.mark.e2e, pytest.mark.emulator_only]

NS = ("v1", "Namespace")
PV = ("v1", "PersistentVolume")


def _rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


async def test_resumed_watch_does_not_show_what_another_tenant_now_owns(
    demo: Demo, cluster: Cluster
) -> None:
    async with (
        session_as(demo, "alice", ["tenant-a-devs"]) as alice,
        session_as(demo, "bob", ["tenant-b-devs"]) as bob,
    ):
        async with alice.get("/api/v1/persistentvolumes") as resp:
            held = await resp.json()
        since = _rv(held)
        assert {o["metadata"]["name"] for o in held["items"]} == {"pv-a-data"}
        # While alice is away: a PV is bound into team-a-prod, then the namespace moves to
        # team-b. The PV is team-b's now; alice never held it.
        await cluster.create(persistent_volume("pv-h21", "team-a-prod"))
        moved = await cluster.patch(
            *NS, "team-a-prod", {"metadata": {"labels": {TENANT_LABEL: "team-b"}}}
        )

        # Once bob's list has it, the proxy has heard both changes.
        async def heard() -> bool | None:
            async with bob.get("/api/v1/persistentvolumes") as resp:
                names = {o["metadata"]["name"] for o in (await resp.json())["items"]}
            return "pv-h21" in names or None

        await until(heard, "bob sees pv-h21", 20)
        query = f"watch=1&allowWatchBookmarks=true&resourceVersion={since}"
        async with alice.get(f"/api/v1/persistentvolumes?{query}") as resp:
            assert resp.status == 200
            watch = Watch(resp)
            await watch.until(
                lambda e: e["type"] == "BOOKMARK" and _rv(e["object"]) >= _rv(moved.to_dict())
            )
        shown = [(e["type"], name_of(e)) for e in watch.events if e["type"] != "BOOKMARK"]
        assert ("ADDED", "pv-h21") not in shown, shown
