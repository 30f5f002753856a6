"""A list at an old version through a pushed-down rule (found by review h21).

Lists at a version judge by tenancy then *and* now ("what a caller may no longer see stays
hidden, however old the version it asks for", list_from_cache). A rule that is a label selector
(nodes, classes by selector, node metrics) is pushed down to the API server, which applies it to
the state at the version asked for: the labels of then. A client can write the API server's
continue token itself (base64 JSON of a version and a key), and a token the proxy cannot read
goes upstream; so such an answer (any continue token, or an Exact version) is kept only for what
the caller owns now.
"""

from __future__ import annotations

import pytest
from cluster import Cluster
from watching import session_as

from tenant_proxy.demo import Demo
from tenant_proxy.emulator.listing import encode_continue

pytestmark = [pytest.mark.e2e, pytest.mark.emulator_only]

NODE = ("v1", "Node")


def pool(name: str) -> dict[str, object]:
    return {"metadata": {"labels": {"pool": name}}}


async def test_an_old_version_through_a_pushed_down_rule_hides_what_is_no_longer_ones(
    demo: Demo, cluster: Cluster
) -> None:
    then = await cluster.patch(*NODE, "node-b1", pool("team-a"))
    await cluster.patch(*NODE, "node-b1", pool("team-b"))  # bob's again
    async with session_as(demo, "alice", ["tenant-a-devs"]) as alice:
        async with alice.get("/api/v1/nodes") as resp:
            now = {o["metadata"]["name"] for o in (await resp.json())["items"]}
        assert "node-b1" not in now
        token = encode_continue(int(then.to_dict()["metadata"]["resourceVersion"]), "")
        async with alice.get(f"/api/v1/nodes?limit=50&continue={token}") as resp:
            body = await resp.json()
        shown = {o["metadata"]["name"] for o in body.get("items") or []}
        assert "node-b1" not in shown, (resp.status, body)
