"""The tenancy index against an API server (the emulator, over a real socket): rules that read
new fields or new resources are indexed before they are relied on, and RoleBinding bursts are
coalesced."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from backups import BACKUP_CRD, BACKUPS, backup
from kube_objects import persistent_volume
from prometheus_client import generate_latest

from tenant_proxy.config import Settings
from tenant_proxy.demo import TENANTS, demo_world
from tenant_proxy.emulator.app import Emulator
from tenant_proxy.identity import Identity
from tenant_proxy.informers.coalescer import Coalescer
from tenant_proxy.informers.index import TenancyIndex
from tenant_proxy.kube.resources import NAMESPACES, PERSISTENT_VOLUMES, GroupResource
from tenant_proxy.observability.metrics import Metrics
from tenant_proxy.settings_file import parse_settings
from tenant_proxy.tenancy.model import TenantView
from tenant_proxy.tenancy.settings import TenantSettings
from tenant_proxy.upstream import Upstream

ALICE = Identity(user="alice", groups=("tenant-a-devs",))


@dataclass
class World:
    emulator: Emulator
    settings: Settings
    index: TenancyIndex
    metrics: Metrics

    def reload(self, change: dict[str, Any]) -> bool:
        """Reload the config with team-a's settings updated by `change`."""
        tenants = [
            TenantSettings.model_validate({**t, **change} if t["name"] == "team-a" else t)
            for t in TENANTS
        ]
        return self.index.set_config_tenants(tenants)

    def alice(self) -> TenantView:
        view = self.index.view_for(ALICE)
        assert view is not None
        return view


@contextlib.asynccontextmanager
async def started_world(directory: Path, sync_timeout: float = 10.0) -> AsyncIterator[World]:
    emulator = Emulator(seed_objects=[*demo_world(), BACKUP_CRD])
    await emulator.start()
    for name, namespace in [("backup-a", "team-a-prod"), ("backup-b", "team-b-dev")]:
        await emulator.create(backup(name, namespace))
    # Generic resources need RBAC of their own; the demo ClusterRole covers only the built-ins.
    kubeconfig = emulator.write_kubeconfig(
        directory / "kubeconfig", "tenant-proxy", ("system:masters",)
    )
    settings = parse_settings(
        {
            "tls": {"cert_file": "unused.crt", "key_file": "unused.key"},
            "upstream": {"kubeconfig": str(kubeconfig)},
            "tenancy": {
                "tenants": TENANTS,
                "rolebinding_namespaces": True,
                "sync_timeout_seconds": sync_timeout,
            },
        },
        environ={},
    )
    upstream, metrics = Upstream(settings.upstream), Metrics()
    index = TenancyIndex(settings.tenancy, upstream, metrics)
    await index.start()
    try:
        assert await index.wait_synced(10)
        yield World(emulator, settings, index, metrics)
    finally:
        await index.stop()
        await upstream.close()
        await emulator.stop()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with started_world(tmp_path) as started:
        yield started


BACKUPS_BY_NAME = {"group": "example.com", "resource": "backups", "names": ["backup-b"]}
BACKUPS_BY_SOURCE = {**BACKUPS_BY_NAME, "field_path": "spec.sourceNamespace"}


async def test_a_rule_reading_a_new_field_is_published_once_the_resource_is_listed_with_it(
    world: World,
) -> None:
    index = world.index
    assert world.reload({"resources": [BACKUPS_BY_NAME]})
    assert await index.wait_synced(10)
    assert "spec" not in index.objects(BACKUPS)["backup-a"]
    assert index.owned(BACKUPS, world.alice()).keys() == {"backup-b"}
    world.emulator.fail_next(10**6, 500)  # the re-list cannot finish: the window stays open
    before = index.generation

    assert world.reload({"resources": [BACKUPS_BY_SOURCE]})

    # Tenants are adopted at once (a narrowing must not wait), but nothing is judged on
    # projections without the field, and filtered reads wait as for the first sync.
    assert index.generation == before + 1
    assert index.owned(BACKUPS, world.alice()) == {}
    assert not await index.wait_synced(0)
    assert not await index.wait_synced(0, BACKUPS)
    # Reads of anything else do not wait for it.
    assert await index.wait_synced(0, PERSISTENT_VOLUMES)
    assert await index.wait_synced(0, NAMESPACES)
    assert index.synced  # readiness is not withdrawn for it

    world.emulator.fail_next(0, 500)
    async with asyncio.timeout(10):
        published = await index.wait_change(before + 1)
    assert published == before + 2
    assert await index.wait_synced(0)
    assert index.owned(BACKUPS, world.alice()).keys() == {"backup-a", "backup-b"}
    assert index.objects(BACKUPS)["backup-b"]["spec"] == {"sourceNamespace": "team-b-dev"}


async def test_a_tenant_cr_adding_a_field_rule_is_followed_the_same_way(world: World) -> None:
    index = world.index
    carol = Identity(user="oidc:carol", groups=("oidc:tenant-c-devs",))
    assert world.reload({"resources": [BACKUPS_BY_NAME]})
    assert await index.wait_synced(10)
    before = index.generation
    await world.emulator.apply(
        {
            "apiVersion": "tenancy.tenant-proxy.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": "team-c"},
            "spec": {
                "members": {"groups": ["oidc:tenant-c-devs"]},
                "namespaces": ["team-b-dev"],
                "resources": [
                    {
                        "group": "example.com",
                        "resource": "backups",
                        "fieldPath": "spec.sourceNamespace",
                    }
                ],
            },
        }
    )
    async with asyncio.timeout(10):
        await index.wait_change(before)
        assert await index.wait_synced(10)
    view = index.view_for(carol)
    assert view is not None
    assert index.owned(BACKUPS, view).keys() == {"backup-b"}


async def test_a_resource_that_cannot_be_listed_holds_filtered_reads_only_so_long(
    tmp_path: Path,
) -> None:
    async with started_world(tmp_path, sync_timeout=0.3) as world:
        index = world.index
        assert world.reload({"resources": [BACKUPS_BY_NAME]})
        assert await index.wait_synced(10)
        world.emulator.fail_next(10**6, 500)
        assert world.reload({"resources": [BACKUPS_BY_SOURCE]})
        assert not await index.wait_synced(0)
        assert await index.wait_synced(10)  # released at the sync timeout
        assert index.owned(BACKUPS, world.alice()) == {}  # still judged on nothing

        before = index.generation
        world.emulator.fail_next(0, 500)
        async with asyncio.timeout(15):
            await index.wait_change(before)
        assert index.owned(BACKUPS, world.alice()).keys() == {"backup-a", "backup-b"}


async def test_a_resource_discovery_cannot_find_yet_is_indexed_once_it_can(world: World) -> None:
    index = world.index
    world.emulator.fail_next(10**6, 500)
    assert world.reload({"resources": [BACKUPS_BY_SOURCE]})
    assert await index.wait_synced(10)  # nothing served: nothing to wait for
    assert index.owned(BACKUPS, world.alice()) == {}

    before = index.generation
    world.emulator.fail_next(0, 500)
    async with asyncio.timeout(15):
        await index.wait_change(before)
    assert index.owned(BACKUPS, world.alice()).keys() == {"backup-a", "backup-b"}


def informer_metric(world: World, gr: GroupResource) -> bool:
    exposed = generate_latest(world.metrics.registry).decode()
    return f'tenant_proxy_informer_synced{{resource="{gr}"}} 1.0' in exposed


async def test_a_rule_for_a_new_resource_starts_its_informer_and_removing_the_last_stops_it(
    world: World,
) -> None:
    index = world.index
    assert BACKUPS not in index.filtered_resources()
    assert world.reload({"resources": [BACKUPS_BY_SOURCE]})
    assert index.owned(BACKUPS, world.alice()) == {}
    assert await index.wait_synced(10)
    assert index.owned(BACKUPS, world.alice()).keys() == {"backup-a", "backup-b"}
    assert informer_metric(world, BACKUPS)

    stopped = asyncio.Event()
    world.emulator.store.on_unwatch.append(
        lambda watcher: stopped.set() if watcher.key == ("example.com", "backups") else None
    )
    assert world.reload({"resources": []})
    assert BACKUPS not in index.filtered_resources()
    assert index.objects(BACKUPS) == {}
    assert not informer_metric(world, BACKUPS)
    async with asyncio.timeout(10):
        await stopped.wait()  # its watch is closed at the API server
    assert await index.wait_synced(0)


async def test_a_rule_for_a_resource_nobody_serves_does_not_hold_filtered_reads(
    world: World,
) -> None:
    rule = {"group": "nowhere.example.com", "resource": "ghosts", "names": ["g"]}
    assert world.reload({"resources": [rule]})
    assert await world.index.wait_synced(10)
    ghosts = GroupResource("nowhere.example.com", "ghosts")
    assert world.index.owned(ghosts, world.alice()) == {}


# -- RoleBindings ---------------------------------------------------------------------------------


def role_binding(name: str, namespace: str, kind: str, subject: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": subject}],
    }


async def test_rolebinding_changes_nobody_sees_wake_nobody_and_one_naming_alice_does(
    world: World,
) -> None:
    index, emulator = world.index, world.emulator
    generation, touches = index.generation, index.grant_wake.touches
    # bob is team-b's by name, tenant-b-devs by group: both see team-b-dev already.
    await emulator.create(role_binding("bob", "team-b-dev", "User", "bob"))
    await emulator.create(role_binding("b1", "team-b-dev", "Group", "tenant-b-devs"))
    # A second grant of what the demo's tenant-admin binding grants already.
    await emulator.create(role_binding("again", "team-a-dev", "Group", "tenant-a-devs"))
    changed = role_binding("b1", "team-b-dev", "Group", "tenant-b-devs")
    changed["metadata"]["annotations"] = {"note": "re-applied"}
    await emulator.apply(changed)
    # The sentinel follows them on the RoleBinding stream: once it wakes, all were judged.
    await emulator.create(role_binding("alice", "team-b-dev", "User", "alice"))
    async with asyncio.timeout(5):
        assert await index.wait_change(generation) == generation + 1
    assert index.grant_wake.touches == touches + 1  # the sentinel's only
    assert world.alice().namespaces == {"team-a-dev", "team-a-prod", "team-b-dev"}


async def test_a_burst_of_rolebindings_wakes_watchers_once_per_pause() -> None:
    fired = asyncio.Event()
    count = 0

    def fire() -> None:
        nonlocal count
        count += 1
        fired.set()

    wake = Coalescer(fire, quiet=0.05, longest=0.4)
    for _ in range(1000):
        wake.touch()
    async with asyncio.timeout(5):
        await fired.wait()
    assert count == 1
    assert not wake.pending


async def test_a_steady_stream_of_touches_still_fires_at_the_longest_delay() -> None:
    loop = asyncio.get_running_loop()
    fires: list[float] = []
    wake = Coalescer(lambda: fires.append(loop.time()), quiet=0.05, longest=0.1)
    done = asyncio.Event()
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        wake.touch()
        ticks += 1
        if ticks < 40:
            loop.call_later(0.01, tick)  # a touch every 10 ms: never a 50 ms pause
        else:
            done.set()

    tick()
    async with asyncio.timeout(10):
        await done.wait()
    wake.cancel()
    # ≥ 0.4 s of touches, each pause shorter than `quiet`: only the longest delay fires.
    assert len(fires) >= 2


async def test_owned_objects_follow_their_changes_between_tenancy_changes(world: World) -> None:
    """`owned` is kept per view, but an object that comes (or goes) without any tenancy
    change is judged at the next ask: a PV bound into team-a's namespace is team-a's."""
    index = world.index
    assert "pv-late" not in index.owned(PERSISTENT_VOLUMES, world.alice())
    generation = index.generation
    await world.emulator.create(persistent_volume("pv-late", "team-a-prod"))
    async with asyncio.timeout(10):
        while "pv-late" not in index.objects(PERSISTENT_VOLUMES):
            await asyncio.sleep(0.05)
    assert index.generation == generation  # no tenancy change came with it
    assert "pv-late" in index.owned(PERSISTENT_VOLUMES, world.alice())
    await world.emulator.delete("v1", "PersistentVolume", "pv-late")
    async with asyncio.timeout(10):
        while "pv-late" in index.objects(PERSISTENT_VOLUMES):
            await asyncio.sleep(0.05)
    assert "pv-late" not in index.owned(PERSISTENT_VOLUMES, world.alice())
