"""Watches the way real clients make them, through the proxy, across tenancy changes.

client-go's reflector (and kubernetes_asyncio's Watch) lists, watches from the list's
resourceVersion, resumes from the last resourceVersion it saw after a cut, and re-lists on 410;
`kubectl get -w` lists then watches from the list's resourceVersion. Whatever moves (a
namespace relabelled out and back, a PV bound into a tenant namespace, a namespace joining the
tenant with its PVs, a Tenant CR edited, the config reloaded), the client must end holding
exactly what a fresh list shows it, with each transition once and nothing foreign ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cluster import Cluster
from reflector import Reflector
from test_websocket_watches import SocketWatch, connect, tenant
from watching import Watch, is_, name_of, session_as

from tenant_proxy.config import Settings
from tenant_proxy.demo import Demo
from tenant_proxy.emulator.testing import kubectl_binary
from tenant_proxy.kube.resources import NAMESPACES

pytestmark = [pytest.mark.e2e, pytest.mark.emulator_only]

NS = ("v1", "Namespace")
PV = ("v1", "PersistentVolume")
TENANT_LABEL = "tenant-proxy.io/tenant"
ALICE = ("alice", ["tenant-a-devs"])


def relabel(name: str, tenant: str) -> dict[str, object]:
    return {"metadata": {"labels": {TENANT_LABEL: tenant}}}


@pytest.fixture
async def alice(demo: Demo) -> AsyncIterator[tuple[Reflector, Reflector]]:
    kubeconfig = demo.kubeconfig(*ALICE)
    namespaces, api1 = await Reflector.for_kubeconfig(kubeconfig, "list_namespace")
    volumes, api2 = await Reflector.for_kubeconfig(kubeconfig, "list_persistent_volume")
    try:
        yield namespaces, volumes
    finally:
        await namespaces.stop()
        await volumes.stop()
        await api1.close()
        await api2.close()


async def fresh_names(reflector: Reflector) -> set[str]:
    """What a new list through the proxy shows now (the oracle the watch must agree with)."""
    probe = Reflector(reflector._lister.__self__.api_client, reflector._lister.__name__)
    await probe.list()
    return set(probe.store)


async def settled(reflector: Reflector) -> None:
    """Wait until the reflector holds exactly what a fresh list shows (both move on events)."""

    async def agree() -> bool:
        return set(reflector.store) == await fresh_names(reflector)

    async def poll() -> None:
        while not await agree():
            await reflector.until(lambda _r: True, timeout=15)

    await asyncio.wait_for(poll(), 20)


# Everything that was team-a's at some moment of the tests below.
EVER_TEAM_A = {"team-a-dev", "team-a-prod", "team-c-dev", "pv-a-data", "pv-unbound", "pv-c-data"}


def foreign(names: set[str]) -> set[str]:
    return names - EVER_TEAM_A


async def test_reflectors_follow_tenancy_through_cuts_and_resumes(
    demo: Demo, cluster: Cluster, alice: tuple[Reflector, Reflector]
) -> None:
    namespaces, volumes = alice
    for r in (namespaces, volumes):
        await r.list()
        r.start()
    assert set(namespaces.store) == {"team-a-dev", "team-a-prod"}

    # Out: team-a-prod moves to team-b while the watches are open.
    await cluster.patch(*NS, "team-a-prod", relabel("team-a-prod", "team-b"))
    await namespaces.until(lambda r: "team-a-prod" not in r.store)
    await settled(namespaces)

    # Cut both connections; everything below happens while the clients are away.
    for r in (namespaces, volumes):
        await r.stop()
    await cluster.patch(*NS, "team-a-prod", relabel("team-a-prod", "team-a"))
    await cluster.patch(
        *PV, "pv-unbound", {"spec": {"claimRef": {"name": "x", "namespace": "team-a-prod"}}}
    )
    await cluster.patch(*NS, "team-c-dev", relabel("team-c-dev", "team-a"))  # brings pv-c-data
    await cluster.patch(*NS, "team-c-dev", relabel("team-c-dev", "team-c"))  # ...and takes it

    # Resume from the last resourceVersion each one saw: exactly the difference arrives.
    for r in (namespaces, volumes):
        r.start()
    await namespaces.until(lambda r: "team-a-prod" in r.store)
    await volumes.until(lambda r: "pv-unbound" in r.store)
    await settled(namespaces)
    await settled(volumes)
    assert set(namespaces.store) == {"team-a-dev", "team-a-prod"}
    assert set(volumes.store) == {"pv-a-data", "pv-unbound"}
    # team-c-dev (and its PV) joined and left while the client was away: replayed as the
    # API server replays its window (ADDED then DELETED), gone at the end; nothing else shown.
    assert foreign(namespaces.seen | volumes.seen) == set()
    assert namespaces.faults == []
    assert volumes.faults == []
    assert namespaces.relists == volumes.relists == 1  # resumed, never re-listed


async def test_a_tenant_cr_edit_during_a_cut_is_delivered_on_resume(
    demo: Demo, cluster: Cluster
) -> None:
    token = demo.issuer.token("carol", ["tenant-c-devs"])
    kubeconfig = demo.token_kubeconfig("carol-token", token)
    carol, api = await Reflector.for_kubeconfig(kubeconfig, "list_namespace")
    try:
        await carol.list()
        assert set(carol.store) == {"team-c-dev"}
        carol.start()
        await carol.until(lambda r: r.rv != "")
        await carol.stop()
        # The Tenant CR gives team-c one more namespace, by name, while carol is away.
        await cluster.patch(
            "tenancy.tenant-proxy.io/v1alpha1",
            "Tenant",
            "team-c",
            {"spec": {"namespaces": ["platform"]}},
        )
        carol.start()
        await carol.until(lambda r: set(r.store) == {"team-c-dev", "platform"})
        await cluster.patch(
            "tenancy.tenant-proxy.io/v1alpha1", "Tenant", "team-c", {"spec": {"namespaces": []}}
        )
        await carol.until(lambda r: set(r.store) == {"team-c-dev"})
        assert carol.faults == []
        assert carol.relists == 1
    finally:
        await carol.stop()
        await api.close()


async def test_kubectl_get_watch_shows_each_transition_once(demo: Demo, cluster: Cluster) -> None:
    """kubectl lists, then watches from the list's resourceVersion; with --output-watch-events
    it prints each event's type."""
    kubeconfig = demo.kubeconfig(*ALICE)
    proc = await asyncio.create_subprocess_exec(
        kubectl_binary(),
        "--kubeconfig",
        str(kubeconfig),
        "get",
        "namespaces",
        "-w",
        "--output-watch-events",
        "--no-headers",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"HOME": str(Path(kubeconfig).parent)},
    )
    assert proc.stdout is not None
    lines: list[tuple[str, str]] = []

    async def next_line() -> tuple[str, str]:
        raw = await asyncio.wait_for(proc.stdout.readline(), 15)  # type: ignore[union-attr]
        assert raw, "kubectl ended"
        kind, name = raw.decode().split()[:2]
        lines.append((kind, name))
        return kind, name

    try:
        assert {await next_line(), await next_line()} == {
            ("ADDED", "team-a-dev"),
            ("ADDED", "team-a-prod"),
        }
        assert demo.proxy is not None
        streams = demo.proxy.streams

        async def watching() -> None:
            while len(streams) != 1:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(watching(), 15)
        await cluster.patch(*NS, "team-a-prod", relabel("team-a-prod", "team-b"))
        assert await next_line() == ("DELETED", "team-a-prod")
        await cluster.patch(*NS, "team-a-prod", relabel("team-a-prod", "team-a"))
        assert await next_line() == ("ADDED", "team-a-prod")
        await cluster.patch(*NS, "team-a-dev", {"metadata": {"labels": {"touched": "yes"}}})
        assert await next_line() == ("MODIFIED", "team-a-dev")
    finally:
        proc.kill()
        await proc.wait()
    # Nothing foreign, and team-a-dev was not re-added when team-a-prod came back.
    assert [n for _, n in lines if not n.startswith("team-a")] == []
    assert lines.count(("ADDED", "team-a-dev")) == 1


@pytest.mark.parametrize("form", ["metadata", "websocket"])
async def test_a_watch_from_a_lists_version_follows_tenancy_in_every_form(
    demo: Demo, cluster: Cluster, form: str
) -> None:
    """List, then watch from the list's resourceVersion as PartialObjectMetadata or over a
    WebSocket; a namespace relabelled out and back before and after the watch opened."""
    partial = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io"
    async with session_as(demo, *ALICE) as alice:
        async with alice.get("/api/v1/namespaces") as resp:
            rv = (await resp.json())["metadata"]["resourceVersion"]
        # Between the list and the watch: team-a-prod leaves.
        await cluster.patch(*NS, "team-a-prod", relabel("team-a-prod", "team-b"))
        path = f"/api/v1/namespaces?watch=1&resourceVersion={rv}"
        if form == "metadata":
            async with alice.get(path, headers={"Accept": partial}) as resp:
                watch = Watch(resp)
                gone = await watch.until(lambda e: e["type"] != "BOOKMARK")
                await cluster.patch(*NS, "team-a-prod", relabel("team-a-prod", "team-a"))
                back = await watch.until(lambda e: e["type"] != "BOOKMARK")
            events = [gone, back]
        else:
            async with connect(alice, tenant(demo, path)) as ws:
                socket = SocketWatch(ws)
                gone = await socket.until(lambda e: e["type"] != "BOOKMARK")
                await cluster.patch(*NS, "team-a-prod", relabel("team-a-prod", "team-a"))
                back = await socket.until(lambda e: e["type"] != "BOOKMARK")
            events = [gone, back]
    assert [(e["type"], name_of(e)) for e in events] == [
        ("DELETED", "team-a-prod"),
        ("ADDED", "team-a-prod"),
    ]
    assert is_("DELETED", "team-a-prod")(events[0])
    if form == "metadata":
        assert {e["object"]["kind"] for e in events} == {"PartialObjectMetadata"}
    # The DELETED carries the last state alice saw (still team-a's), at the change's version.
    assert events[0]["object"]["metadata"]["labels"][TENANT_LABEL] == "team-a"
    assert int(events[0]["object"]["metadata"]["resourceVersion"]) > int(rv)


class SmallWindowDemo(Demo):
    """The demo whose watch cache keeps only the last three changes per resource."""

    def settings(self, upstream: Path) -> Settings:
        settings = super().settings(upstream)
        limits = settings.limits.model_copy(update={"watch_cache_events": 3})
        return settings.model_copy(update={"limits": limits})


async def test_a_reflector_behind_the_window_gets_410_and_relists(tmp_path: Path) -> None:
    demo = SmallWindowDemo(tmp_path)
    await demo.start()
    namespaces, api = await Reflector.for_kubeconfig(demo.kubeconfig(*ALICE), "list_namespace")
    try:
        await namespaces.list()
        namespaces.start()
        await namespaces.until(lambda r: r.rv != "")
        await namespaces.stop()
        # More changes than the window holds while the client is away.
        for i in range(5):
            await demo.emulator.create(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": f"team-a-w{i}", "labels": {TENANT_LABEL: "team-a"}},
                }
            )
        # ...until the proxy's window no longer reaches back to where the client stands.
        assert demo.proxy is not None
        cache = demo.proxy.index.caches.get(NAMESPACES)
        assert cache is not None

        async def moved_past() -> None:
            while cache.timeline is None or cache.timeline.floor.rv <= int(namespaces.rv):
                await asyncio.sleep(0.02)

        await asyncio.wait_for(moved_past(), 15)
        namespaces.start()
        await namespaces.until(lambda r: len(r.store) == 7)
        assert namespaces.relists == 2  # the 410 made it list again, as client-go does
        assert set(namespaces.store) == {
            "team-a-dev",
            "team-a-prod",
            *(f"team-a-w{i}" for i in range(5)),
        }
    finally:
        await namespaces.stop()
        await api.close()
        await demo.stop()
