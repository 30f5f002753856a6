"""Node Lease routing reads the index's owned nodes (`TenancyIndex.owned`), kept
per rule until an object of the resource changes. A node relabelled between tenants moves
its Lease with it: the new owner reads it, the old one gets the answer a node never its own
gets (403, as for a Lease that does not exist)."""

from __future__ import annotations

from typing import Any

import pytest
from cluster import Cluster, until
from watching import session_as

from tenant_proxy.demo import Demo

pytestmark = [pytest.mark.e2e, pytest.mark.emulator_only]

NODE = ("v1", "Node")
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"


async def _code(session: Any, path: str) -> int:
    async with session.get(path) as resp:
        await resp.read()
        return resp.status


async def test_a_relabelled_nodes_lease_follows_it_to_its_new_tenant(
    demo: Demo, cluster: Cluster
) -> None:
    async with (
        session_as(demo, "alice", ["tenant-a-devs"]) as alice,
        session_as(demo, "bob", ["tenant-b-devs"]) as bob,
    ):
        lease = f"{LEASES}/node-a1"
        assert (await _code(alice, lease), await _code(bob, lease)) == (200, 403)
        missing = await _code(alice, f"{LEASES}/no-such-node")
        await cluster.patch(*NODE, "node-a1", {"metadata": {"labels": {"pool": "team-b"}}})

        async def moved() -> bool | None:
            codes = (await _code(alice, lease), await _code(bob, lease))
            return True if codes == (missing, 200) else None

        await until(moved, "node-a1's Lease follows the node to team-b", 20)
