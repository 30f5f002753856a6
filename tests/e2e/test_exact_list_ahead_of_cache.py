"""Lists at an exact resourceVersion the watch cache has not heard yet (found by review h21).

A client may hold a resourceVersion from anywhere (etcd revisions are global: a write of
another resource, a list of another resource). kube-apiserver never answers a list at a
version it has not reached with an older state: the cacher waits for it, then fails with
"Too large resource version" (504, ResourceVersionTooLarge), and etcd refuses a future
revision. A list answered as "the state at N" while missing changes up to N makes the
client's watch from N skip them for good: it holds N, so they are in its list.
"""

from __future__ import annotations

import pytest
from cluster import Cluster
from watching import Watch, name_of, session_as

from tenant_proxy.demo import Demo

pytestmark = [pytest.mark.e2e, pytest.mark.emulator_only]

PV = ("v1", "PersistentVolume")
ALICE = ("alice", ["tenant-a-devs"])


async def test_exact_list_ahead_of_the_cache_does_not_hide_changes_from_the_next_watch(
    demo: Demo, cluster: Cluster
) -> None:
    ahead = demo.emulator.store.resource_version + 3
    async with session_as(demo, *ALICE) as alice:
        query = f"resourceVersion={ahead}&resourceVersionMatch=Exact"
        async with alice.get(f"/api/v1/persistentvolumes?{query}") as resp:
            listed = await resp.json()
        if resp.status != 200:
            # As the API server: the version is not reached, the client lists again later.
            assert resp.status == 504, listed
            return
        held = {o["metadata"]["name"] for o in listed["items"]}
        assert held == {"pv-a-data"}
        assert listed["metadata"]["resourceVersion"] == str(ahead)
        # The changes the list claims to hold: pv-unbound bound into team-a (ahead - 2)...
        await cluster.patch(
            *PV, "pv-unbound", {"spec": {"claimRef": {"name": "x", "namespace": "team-a-prod"}}}
        )
        # ... then a change past the asked version, which the watch must show after it.
        for n in range(4):
            await cluster.patch(*PV, "pv-a-data", {"metadata": {"labels": {"step": str(n)}}})
        assert demo.emulator.store.resource_version > ahead
        async with alice.get(f"/api/v1/persistentvolumes?watch=1&resourceVersion={ahead}") as w:
            watch = Watch(w)
            last = await watch.until(
                lambda e: (
                    e["type"] == "MODIFIED" and e["object"]["metadata"]["labels"] == {"step": "3"}
                )
            )
            seen = {name_of(e) for e in watch.events if e["type"] == "ADDED"}
            # The list did not have pv-unbound: the watch must add it (or the list fail).
            assert "pv-unbound" in held | seen, (last, watch.events)
