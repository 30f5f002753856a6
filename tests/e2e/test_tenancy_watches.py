"""Open watches follow tenancy: objects enter and leave a tenant's set with ADDED / DELETED,
whether the object changed or the tenancy did, in JSON and in Table form."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from cluster import Cluster
from kube_objects import namespace
from watching import TABLE, Watch, is_, name_of, session_as

from tenant_proxy.demo import Demo
from tenant_proxy.emulator.testing import client_ssl

pytestmark = pytest.mark.e2e

NS = ("v1", "Namespace")
PV = ("v1", "PersistentVolume")


@pytest.fixture
async def alice_watch(demo: Demo) -> AsyncIterator[Watch]:
    async with session_as(demo, "alice", ["tenant-a-devs"]) as session:
        async with session.get("/api/v1/namespaces?watch=1") as resp:
            assert resp.status == 200
            yield Watch(resp)


async def test_initial_events_are_only_the_tenants(alice_watch: Watch) -> None:
    events = await alice_watch.initial(2)
    assert {name_of(e) for e in events} == {"team-a-dev", "team-a-prod"}
    assert all(e["type"] == "ADDED" for e in events)


async def test_namespace_labelled_into_tenant_is_added(
    demo: Demo, alice_watch: Watch, cluster: Cluster
) -> None:
    await alice_watch.initial(2)
    await cluster.create(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a-new"}}
    )
    await cluster.create(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "team-b-new", "labels": {"tenant-proxy.io/tenant": "team-b"}},
        }
    )
    await cluster.patch(
        *NS, "team-a-new", {"metadata": {"labels": {"tenant-proxy.io/tenant": "team-a"}}}
    )
    added = await alice_watch.until(lambda e: e["type"] == "ADDED")
    assert name_of(added) == "team-a-new"


async def test_namespace_relabelled_to_other_tenant_is_deleted_and_added(
    demo: Demo, cluster: Cluster
) -> None:
    async with (
        session_as(demo, "alice", ["tenant-a-devs"]) as a,
        session_as(demo, "bob", ["tenant-b-devs"]) as b,
    ):
        async with (
            a.get("/api/v1/namespaces?watch=1") as ra,
            b.get("/api/v1/namespaces?watch=1") as rb,
        ):
            alice, bob = Watch(ra), Watch(rb)
            await alice.initial(2)
            await bob.initial(1)
            await cluster.patch(
                *NS, "team-a-prod", {"metadata": {"labels": {"tenant-proxy.io/tenant": "team-b"}}}
            )
            gone = await alice.until(lambda e: e["type"] != "BOOKMARK")
            assert (gone["type"], name_of(gone)) == ("DELETED", "team-a-prod")
            came = await bob.until(lambda e: e["type"] != "BOOKMARK")
            assert (came["type"], name_of(came)) == ("ADDED", "team-a-prod")


async def test_pv_bound_into_tenant_namespace_appears_on_watch(
    demo: Demo, cluster: Cluster
) -> None:
    async with session_as(demo, "alice", ["tenant-a-devs"]) as session:
        async with session.get("/api/v1/persistentvolumes?watch=1") as resp:
            watch = Watch(resp)
            first = await watch.next()
            assert name_of(first) == "pv-a-data"
            await cluster.patch(
                *PV, "pv-unbound", {"spec": {"claimRef": {"name": "x", "namespace": "team-a-prod"}}}
            )
            added = await watch.until(lambda e: e["type"] != "BOOKMARK")
            assert (added["type"], name_of(added)) == ("ADDED", "pv-unbound")


async def test_namespace_joining_tenant_reveals_its_pvs_on_open_watch(
    demo: Demo, cluster: Cluster
) -> None:
    """A tenancy change (not an object change) must add objects the watch never carried."""
    async with session_as(demo, "alice", ["tenant-a-devs"]) as session:
        async with session.get("/api/v1/persistentvolumes?watch=1") as resp:
            watch = Watch(resp)
            assert name_of(await watch.next()) == "pv-a-data"
            # team-c-dev holds pv-c-data; moving the namespace to team-a must show it to alice.
            await cluster.patch(
                *NS, "team-c-dev", {"metadata": {"labels": {"tenant-proxy.io/tenant": "team-a"}}}
            )
            added = await watch.until(lambda e: e["type"] != "BOOKMARK")
            assert (added["type"], name_of(added)) == ("ADDED", "pv-c-data")


async def test_member_removed_from_tenant_cr_sees_deletions(demo: Demo, cluster: Cluster) -> None:
    token = demo.issuer.token("carol", ["tenant-c-devs"])
    assert demo.proxy is not None
    import aiohttp

    connector = aiohttp.TCPConnector(ssl=client_ssl(demo.client_ca.cert_pem))
    async with aiohttp.ClientSession(base_url=demo.proxy.tenant_url, connector=connector) as s:
        headers = {"Authorization": f"Bearer {token}"}
        async with s.get("/api/v1/namespaces?watch=1", headers=headers) as resp:
            assert resp.status == 200
            watch = Watch(resp)
            assert name_of(await watch.next()) == "team-c-dev"
            await cluster.patch(
                "tenancy.tenant-proxy.io/v1alpha1",
                "Tenant",
                "team-c",
                {"spec": {"members": {"groups": ["someone-else"]}}},
            )
            gone = await watch.until(lambda e: e["type"] != "BOOKMARK")
            assert (gone["type"], name_of(gone)) == ("DELETED", "team-c-dev")


async def test_table_watch_first_event_carries_columns_and_filters_rows(
    demo: Demo, cluster: Cluster
) -> None:
    async with session_as(demo, "bob", ["tenant-b-devs"]) as session:
        async with session.get("/api/v1/namespaces?watch=1", headers={"Accept": TABLE}) as resp:
            watch = Watch(resp)
            first = await watch.next()
            assert first["object"]["kind"] == "Table"
            assert [c["name"] for c in first["object"]["columnDefinitions"]] == [
                "Name",
                "Status",
                "Age",
            ]
            assert name_of(first) == "team-b-dev"
            await cluster.create(namespace("team-b-two", "team-b"))
            nxt = await watch.until(is_("ADDED", "team-b-two"))
            assert nxt["object"]["columnDefinitions"] is None


async def test_bookmarks_pass_through_filtered_watch(demo: Demo) -> None:
    async with session_as(demo, "alice", ["tenant-a-devs"]) as session:
        async with session.get("/api/v1/namespaces?watch=1&allowWatchBookmarks=true") as resp:
            watch = Watch(resp)
            bookmark = await watch.until(lambda e: e["type"] == "BOOKMARK")
            assert set(bookmark["object"]) >= {"kind", "apiVersion", "metadata"}


@pytest.mark.emulator_only
async def test_upstream_restart_keeps_the_watch_going_without_leaks(
    demo: Demo, alice_watch: Watch, cluster: Cluster
) -> None:
    """Tenant watches are served from the proxy's cache: an API server restart cuts only the
    cache's own watch, which resumes; the tenant's stream goes on and misses nothing."""
    await alice_watch.initial(2)
    demo.emulator.cut_watches()
    await cluster.create(namespace("team-a-after-cut", "team-a"))
    await cluster.create(namespace("team-b-after-cut", "team-b"))
    await cluster.patch(*NS, "team-a-dev", {"metadata": {"labels": {"touched": "yes"}}})
    await alice_watch.until(is_("MODIFIED", "team-a-dev"))
    leaked = [
        e
        for e in alice_watch.events
        if e["object"].get("kind") != "Status"
        and e["type"] != "BOOKMARK"
        and not name_of(e).startswith("team-a")
    ]
    assert leaked == []
    assert any(is_("ADDED", "team-a-after-cut")(e) for e in alice_watch.events)


async def test_tenancy_change_respects_the_watch_selectors(demo: Demo, cluster: Cluster) -> None:
    """Objects a tenancy change reveals are added only if the client's own selectors match."""
    async with session_as(demo, "alice", ["tenant-a-devs"]) as session:
        query = "watch=1&labelSelector=tier%3Dgold&allowWatchBookmarks=true"
        async with session.get(f"/api/v1/namespaces?{query}") as resp:
            watch = Watch(resp)
            for name, tier in (("team-c-dev", "silver"), ("platform", "gold")):
                await cluster.patch(*NS, name, {"metadata": {"labels": {"tier": tier}}})
            # Both namespaces join team-a; only the gold one matches the client's selector.
            for name in ("team-c-dev", "platform"):
                await cluster.patch(
                    *NS, name, {"metadata": {"labels": {"tenant-proxy.io/tenant": "team-a"}}}
                )
            added = await watch.until(lambda e: e["type"] == "ADDED")
            assert name_of(added) == "platform"
            # A later bookmark proves the stream moved on without adding team-c-dev.
            await watch.until(lambda e: e["type"] == "BOOKMARK")
            assert [name_of(e) for e in watch.events if e["type"] == "ADDED"] == ["platform"]


async def test_a_table_row_never_prints_a_state_the_tenant_may_not_see(
    demo: Demo, cluster: Cluster
) -> None:
    """A PV bound into alice's namespace is rebound into bob's, and bob's Table list prints
    it there. Alice, resuming her Table watch from before, gets its DELETED with the state she
    saw, or its name alone: never bob's row (its claim names bob's namespace)."""
    claim = {"spec": {"claimRef": {"name": "x", "namespace": "team-a-prod"}}}
    await cluster.patch(*PV, "pv-unbound", claim)
    headers = {"Accept": TABLE}
    async with (
        session_as(demo, "alice", ["tenant-a-devs"]) as alice,
        session_as(demo, "bob", ["tenant-b-devs"]) as bob,
    ):
        async with alice.get("/api/v1/persistentvolumes") as resp:
            listed = await resp.json()
        assert "pv-unbound" in {i["metadata"]["name"] for i in listed["items"]}
        claim = {"spec": {"claimRef": {"name": "y", "namespace": "team-b-dev"}}}
        await cluster.patch(*PV, "pv-unbound", claim)

        async def bob_has_it() -> None:
            while True:
                async with bob.get("/api/v1/persistentvolumes", headers=headers) as resp:
                    rows = (await resp.json())["rows"]
                if any(r["cells"][0] == "pv-unbound" for r in rows):
                    return

        await asyncio.wait_for(bob_has_it(), 20)
        rv = listed["metadata"]["resourceVersion"]
        path = f"/api/v1/persistentvolumes?watch=1&resourceVersion={rv}"
        async with alice.get(path, headers=headers) as resp:
            gone = await Watch(resp).until(is_("DELETED", "pv-unbound"))
    cells = gone["object"]["rows"][0]["cells"]
    assert not any("team-b" in str(cell) for cell in cells), cells


async def test_watches_sharing_a_view_part_where_their_views_part(
    demo: Demo, cluster: Cluster
) -> None:
    """Callers of one view share each change's lines until a change gives them different
    views: dave leaves team-c, erin (one group more) stays, both watching one timeline."""
    groups = ["tenant-a-devs", "oidc:tenant-c-devs"]
    async with (
        session_as(demo, "dave", groups) as d,
        session_as(demo, "erin", [*groups, "tenant-c-leads"]) as e,
    ):
        async with (
            d.get("/api/v1/namespaces?watch=1") as rd,
            e.get("/api/v1/namespaces?watch=1") as re_,
        ):
            dave, erin = Watch(rd), Watch(re_)
            for watch in (dave, erin):
                assert {name_of(ev) for ev in await watch.initial(3)} == {
                    "team-a-dev",
                    "team-a-prod",
                    "team-c-dev",
                }
            await cluster.patch(
                "tenancy.tenant-proxy.io/v1alpha1",
                "Tenant",
                "team-c",
                {"spec": {"members": {"groups": ["tenant-c-leads"]}}},
            )
            gone = await dave.until(lambda ev: ev["type"] != "BOOKMARK")
            assert (gone["type"], name_of(gone)) == ("DELETED", "team-c-dev")
            # A later change both see: erin's first event after the Tenant change is it.
            await cluster.create(namespace("team-a-x", "team-a"))
            for watch in (dave, erin):
                came = await watch.until(lambda ev: ev["type"] != "BOOKMARK")
                assert (came["type"], name_of(came)) == ("ADDED", "team-a-x")


async def test_watches_of_one_view_each_get_their_own_form(demo: Demo, cluster: Cluster) -> None:
    """One change, the same view: a JSON watch gets the Namespace, a metadata watch its
    PartialObjectMetadata (their lines are made once per form, not once for all)."""
    meta = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
    async with (
        session_as(demo, "alice", ["tenant-a-devs"]) as a,
        session_as(demo, "alice2", ["tenant-a-devs"]) as b,
    ):
        async with (
            a.get("/api/v1/namespaces?watch=1") as ra,
            b.get("/api/v1/namespaces?watch=1", headers={"Accept": meta}) as rb,
        ):
            whole, partial = Watch(ra), Watch(rb)
            await whole.initial(2)
            await partial.initial(2)
            await cluster.create(namespace("team-a-y", "team-a"))
            for watch, kind in ((whole, "Namespace"), (partial, "PartialObjectMetadata")):
                came = await watch.until(lambda ev: ev["type"] != "BOOKMARK")
                assert (came["type"], name_of(came)) == ("ADDED", "team-a-y")
                assert came["object"]["kind"] == kind
