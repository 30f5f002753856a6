"""Filtered lists answered from the watch cache, through the real proxy.

The cache answers with the API server's consistency rules (a consistent read waits until the
cache has caught up with the API server), pages with the proxy's own tokens from one snapshot,
in every form (JSON, PartialObjectMetadataList, Table, YAML), and its list's resourceVersion is
one a watch resumes from exactly.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
import yaml
from cluster import Cluster
from e2e_kubectl import kubectl
from kube_objects import namespace, persistent_volume
from watching import TABLE, Watch, is_, name_of, session_as

from tenant_proxy.demo import Demo, demo_world
from tenant_proxy.emulator.app import Emulator
from tenant_proxy.kube.resources import NAMESPACES, GroupResource
from tenant_proxy.kube.resources import PERSISTENT_VOLUMES as PVS

pytestmark = [pytest.mark.e2e, pytest.mark.emulator_only]

ALICE = ("alice", ["tenant-a-devs"])
BOB = ("bob", ["tenant-b-devs"])
NS = ("v1", "Namespace")


def upstream_collection_reads(demo: Demo, path: str) -> list[str]:
    """Reads of the whole collection the proxy made upstream (freshness probes excepted)."""
    return [
        r.path
        for r in demo.emulator.received
        if r.path.split("?")[0] == path
        and "watch" not in r.path
        and not r.path.endswith("?limit=1")
    ]


async def test_a_consistent_list_sees_a_write_made_just_before(
    demo: Demo, cluster: Cluster
) -> None:
    async with session_as(demo, *ALICE) as alice:
        for i in range(3):
            await cluster.create(namespace(f"team-a-rw-{i}", "team-a"))
            async with alice.get("/api/v1/namespaces") as resp:
                names = {i["metadata"]["name"] for i in (await resp.json())["items"]}
            assert f"team-a-rw-{i}" in names


async def caught_up(demo: Demo, gr: GroupResource) -> None:
    """Until the proxy's cache of `gr` has heard up to the API server's current version (a
    consistent read is answered from the cache from then on; the emulator's bookmarks bring a
    quiet resource there), so a test knows which path answers."""
    assert demo.proxy is not None
    cache = demo.proxy.index.caches.get(gr)
    assert cache is not None
    current = demo.emulator.store.resource_version

    async def poll() -> None:
        while cache.timeline is None or cache.timeline.heard < current:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), 15)


async def test_a_consistent_list_from_the_cache_sees_an_object_created_after_the_last(
    demo: Demo, cluster: Cluster
) -> None:
    """A PV's creation changes no tenancy: the caller's objects must still be those of the
    cache's state, not of the state it answered the previous list from."""
    await caught_up(demo, PVS)
    async with session_as(demo, *ALICE) as alice:

        async def alices_pvs() -> list[str]:
            async with alice.get("/api/v1/persistentvolumes") as resp:
                assert resp.status == 200
                return [i["metadata"]["name"] for i in (await resp.json())["items"]]

        assert await alices_pvs() == ["pv-a-data"]
        for i in range(3):
            await cluster.create(persistent_volume(f"pv-a-later-{i}", "team-a-dev"))
            assert await alices_pvs() == [
                "pv-a-data",
                *(f"pv-a-later-{j}" for j in range(i + 1)),
            ]


async def test_lists_come_from_the_cache_not_the_collection(demo: Demo) -> None:
    await caught_up(demo, PVS)
    before = len(upstream_collection_reads(demo, "/api/v1/persistentvolumes"))
    async with session_as(demo, *ALICE) as alice:
        for params in ({}, {"resourceVersion": "0"}, {}):
            async with alice.get("/api/v1/persistentvolumes", params=params) as resp:
                assert resp.status == 200
                body = await resp.json()
            assert [i["metadata"]["name"] for i in body["items"]] == ["pv-a-data"]
    assert body["kind"] == "PersistentVolumeList"
    assert "kind" not in body["items"][0]  # list items carry no kind, as the API server's
    after = upstream_collection_reads(demo, "/api/v1/persistentvolumes")
    assert len(after) == before  # only the cheap freshness probes went upstream


async def test_limit_pages_from_one_snapshot_with_tokens_bound_to_the_caller(
    demo: Demo, cluster: Cluster
) -> None:
    for i in range(5):
        await cluster.create(namespace(f"team-a-page-{i}", "team-a"))
    await caught_up(demo, NAMESPACES)
    async with session_as(demo, *ALICE) as alice, session_as(demo, *BOB) as bob:
        async with alice.get("/api/v1/namespaces", params={"limit": "2"}) as resp:
            page = await resp.json()
        snapshot = page["metadata"]["resourceVersion"]
        names = [i["metadata"]["name"] for i in page["items"]]
        assert len(names) == 2
        # Created after the first page, sorting into a later one: not in this list.
        await cluster.create(namespace("team-a-page-9-late", "team-a"))
        token = page["metadata"]["continue"]
        async with bob.get("/api/v1/namespaces", params={"limit": "2", "continue": token}) as r:
            assert r.status == 400  # another caller's token
        while token:
            async with alice.get(
                "/api/v1/namespaces", params={"limit": "2", "continue": token}
            ) as resp:
                assert resp.status == 200, await resp.text()
                page = await resp.json()
            assert page["metadata"]["resourceVersion"] == snapshot
            assert len(page["items"]) <= 2
            names += [i["metadata"]["name"] for i in page["items"]]
            token = page["metadata"].get("continue")
    assert names == sorted(names)
    assert set(names) == {"team-a-dev", "team-a-prod", *(f"team-a-page-{i}" for i in range(5))}
    assert "remainingItemCount" not in page["metadata"]


async def test_a_watch_from_a_cached_lists_version_gets_exactly_what_came_after(
    demo: Demo, cluster: Cluster
) -> None:
    async with session_as(demo, *ALICE) as alice:
        async with alice.get("/api/v1/namespaces") as resp:
            listed = await resp.json()
        rv = listed["metadata"]["resourceVersion"]
        await cluster.patch(*NS, "team-a-prod", {"metadata": {"labels": {"x": "1"}}})
        await cluster.create(namespace("team-b-between", "team-b"))
        await cluster.create(namespace("team-a-between", "team-a"))
        params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true"}
        async with alice.get("/api/v1/namespaces", params=params) as resp:
            watch = Watch(resp)
            await watch.until(is_("ADDED", "team-a-between"))
    changes = [(e["type"], name_of(e)) for e in watch.events if e["type"] != "BOOKMARK"]
    assert changes == [("MODIFIED", "team-a-prod"), ("ADDED", "team-a-between")]


async def test_every_form_of_a_cached_list(demo: Demo) -> None:
    async with session_as(demo, *ALICE) as alice:
        partial = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
        async with alice.get("/api/v1/nodes", headers={"Accept": partial}) as resp:
            meta = await resp.json()
        async with alice.get("/api/v1/nodes", headers={"Accept": TABLE}) as resp:
            table = await resp.json()
        async with alice.get("/api/v1/nodes", headers={"Accept": "application/yaml"}) as resp:
            assert resp.headers["Content-Type"].startswith("application/yaml")
            as_yaml = yaml.safe_load(await resp.text())
        async with alice.get(
            "/api/v1/nodes", headers={"Accept": "application/vnd.kubernetes.protobuf"}
        ) as resp:
            assert resp.status == 406
            assert (await resp.json())["reason"] == "NotAcceptable"
    assert meta["kind"] == "PartialObjectMetadataList"
    assert {i["kind"] for i in meta["items"]} == {"PartialObjectMetadata"}
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]][:2] == ["Name", "Status"]
    assert [r["cells"][0] for r in table["rows"]] == [i["metadata"]["name"] for i in meta["items"]]
    assert all(r["object"]["kind"] == "PartialObjectMetadata" for r in table["rows"])
    assert as_yaml["kind"] == "NodeList"
    assert [i["metadata"]["name"] for i in as_yaml["items"]] == [
        i["metadata"]["name"] for i in meta["items"]
    ]


async def test_a_table_rows_object_is_the_metadata_of_the_state_listed(
    demo: Demo, cluster: Cluster
) -> None:
    """Each row's PartialObjectMetadata is encoded once per object state and reused: a second
    answer is the same, and a change of the object shows in the next one."""

    async def table_metadata() -> dict[str, Any]:
        async with session_as(demo, *ALICE) as alice:
            async with alice.get("/api/v1/persistentvolumes", headers={"Accept": TABLE}) as r:
                assert r.status == 200
                rows = (await r.json())["rows"]
        assert [row["object"]["kind"] for row in rows] == ["PartialObjectMetadata"]
        return dict(rows[0]["object"]["metadata"])

    await caught_up(demo, PVS)
    first = await table_metadata()
    assert await table_metadata() == first
    direct = (await cluster.get("v1", "PersistentVolume", "pv-a-data"))["metadata"]
    assert first["resourceVersion"] == direct["resourceVersion"]
    assert first.get("labels") == direct.get("labels")
    await cluster.patch(
        "v1", "PersistentVolume", "pv-a-data", {"metadata": {"labels": {"tier": "gold"}}}
    )
    changed = await table_metadata()
    assert changed["labels"]["tier"] == "gold"
    assert int(changed["resourceVersion"]) > int(first["resourceVersion"])


async def test_kubectl_chunked_get_pages_through_the_cache(demo: Demo, cluster: Cluster) -> None:
    for i in range(4):
        await cluster.create(namespace(f"team-a-chunk-{i}", "team-a"))
    result = await kubectl(
        demo.kubeconfig(*ALICE), "get", "namespaces", "--chunk-size=1", "-o", "name"
    )
    assert result.code == 0, result.err
    assert result.names() == {
        "team-a-dev",
        "team-a-prod",
        *(f"team-a-chunk-{i}" for i in range(4)),
    }
    shown = orjson.loads(
        (await kubectl(demo.kubeconfig(*ALICE), "get", "namespaces", "-o", "json")).out
    )
    assert shown["kind"] == "List"


@pytest.mark.parametrize("query", ["", "?watch=1"], ids=["list", "watch"])
async def test_a_version_the_cache_does_not_hold_is_the_api_servers_to_answer(
    demo: Demo, query: str
) -> None:
    """StorageClasses are cached as storage.k8s.io/v1; v1beta1 is not served (since 1.22): the
    API server's 404, not the cache's v1 objects under another version."""
    async with session_as(demo, *ALICE) as alice:
        async with alice.get(f"/apis/storage.k8s.io/v1beta1/storageclasses{query}") as resp:
            assert resp.status == 404, await resp.text()
            assert (await resp.json())["reason"] == "NotFound"


async def test_client_gos_protobuf_first_accept_gets_json_lists_and_watches(demo: Demo) -> None:
    """client-go's typed clients accept protobuf first, JSON second: the proxy (which reads
    and writes JSON) answers JSON, as the API server may; protobuf alone is 406 (above)."""
    accept = {"Accept": "application/vnd.kubernetes.protobuf, application/json"}
    async with session_as(demo, *ALICE) as alice:
        async with alice.get("/api/v1/namespaces", headers=accept) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("application/json")
            listed = await resp.json()
        params = {"watch": "1", "resourceVersion": listed["metadata"]["resourceVersion"]}
        params["allowWatchBookmarks"] = "true"
        async with alice.get("/api/v1/namespaces", params=params, headers=accept) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("application/json")
            first = await Watch(resp).next()
    assert {i["metadata"]["name"] for i in listed["items"]} == {"team-a-dev", "team-a-prod"}
    assert first["type"] == "BOOKMARK"


def lease(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40},
    }


async def test_a_quiet_resource_on_a_busy_cluster_is_answered_exactly_and_cached_again(
    tmp_path: Any,
) -> None:
    """kube-apiserver v1.24's cacher bookmarks a watch about once a minute, and other
    resources' writes (node Leases every 10 s) move the current revision on: the cache of a
    quiet resource stays behind it, so consistent reads go upstream (after a few vain waits,
    at once: `watchcache.patience`), exactly right; a write of the resource brings its cache
    up to date and reads come from the cache again."""
    demo = Demo(tmp_path)
    demo.emulator = Emulator(
        seed_objects=demo_world(False), metrics_server=True, bookmark_interval=3600
    )
    await demo.start()
    try:
        store = demo.emulator.store
        async with session_as(demo, *ALICE) as alice:

            async def alices_pvs() -> list[str]:
                async with alice.get("/api/v1/persistentvolumes") as resp:
                    assert resp.status == 200
                    body = await resp.json()
                return [i["metadata"]["name"] for i in body["items"]]

            for i in range(5):
                store.put("coordination.k8s.io", "leases", lease(f"node-{i}"))
                before = len(upstream_collection_reads(demo, "/api/v1/persistentvolumes"))
                assert await alices_pvs() == ["pv-a-data"]
                after = len(upstream_collection_reads(demo, "/api/v1/persistentvolumes"))
                assert after == before + 1  # behind the current revision: the API server's

            store.put("", "persistentvolumes", persistent_volume("pv-a-new", "team-a-dev"))
            await caught_up(demo, PVS)  # the PV's event carries the current revision
            before = len(upstream_collection_reads(demo, "/api/v1/persistentvolumes"))
            assert await alices_pvs() == ["pv-a-data", "pv-a-new"]
            after = len(upstream_collection_reads(demo, "/api/v1/persistentvolumes"))
            assert after == before  # from the cache again
    finally:
        await demo.stop()
