"""The watch cache judges objects on projections (the index's, shared), never on a projection
lacking a field the rules read: against the emulator over a real socket, a rule that comes to
read a new field is judged right at once, before the index has listed again with it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from backups import BACKUP_CRD, BACKUPS, backup

from tenant_proxy.demo import TENANTS, demo_world
from tenant_proxy.emulator.app import Emulator
from tenant_proxy.filtering.objects import passes
from tenant_proxy.identity import Identity
from tenant_proxy.informers.index import TenancyIndex
from tenant_proxy.observability.metrics import Metrics
from tenant_proxy.settings_file import parse_settings
from tenant_proxy.tenancy.settings import TenantSettings
from tenant_proxy.upstream import Upstream
from tenant_proxy.watchcache.cache import ResourceCache
from tenant_proxy.watchcache.replay import side_of

ALICE = Identity(user="alice", groups=("tenant-a-devs",))
BY_NAME = {"group": "example.com", "resource": "backups", "names": ["backup-b"]}
BY_SOURCE = {**BY_NAME, "field_path": "spec.sourceNamespace"}


def with_rule(rule: dict[str, Any]) -> list[TenantSettings]:
    return [
        TenantSettings.model_validate({**t, "resources": [rule]} if t["name"] == "team-a" else t)
        for t in TENANTS
    ]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[Emulator, TenancyIndex]]:
    emulator = Emulator(seed_objects=[*demo_world(), BACKUP_CRD])
    await emulator.start()
    for name, namespace in [("backup-a", "team-a-prod"), ("backup-b", "team-b-dev")]:
        await emulator.create(backup(name, namespace, size="1Gi"))
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kc", "tenant-proxy", ("system:masters",))
    settings = parse_settings(
        {
            "tls": {"cert_file": "unused.crt", "key_file": "unused.key"},
            "upstream": {"kubeconfig": str(kubeconfig)},
            "tenancy": {"tenants": TENANTS},
        },
        environ={},
    )
    upstream = Upstream(settings.upstream)
    index = TenancyIndex(settings.tenancy, upstream, Metrics())
    await index.start()
    try:
        assert await index.wait_synced(10)
        yield emulator, index
    finally:
        await index.stop()
        await upstream.close()
        await emulator.stop()


async def synced_cache(index: TenancyIndex) -> ResourceCache:
    async with asyncio.timeout(10):
        while (cache := index.caches.get(BACKUPS)) is None or cache.timeline is None:
            await index.wait_change(index.generation)
    return cache


def judgements(cache: ResourceCache) -> tuple[dict[str, bool], dict[str, bool]]:
    """Alice's side judged on each kept projection, and on the whole object."""
    cache.settle()
    assert cache.timeline is not None
    side = side_of(cache.timeline.tenancy.view_for(ALICE), BACKUPS)
    assert side is not None
    held = cache.timeline.objects
    on_views = {k: passes(side.owns, o.view) for k, o in held.items()}
    on_objects = {k: passes(side.owns, o.decoded()) for k, o in held.items()}
    return on_views, on_objects


async def test_a_rule_on_a_new_field_is_judged_on_it_before_the_index_lists_it_again(
    world: tuple[Emulator, TenancyIndex],
) -> None:
    emulator, index = world
    assert index.set_config_tenants(with_rule(BY_NAME))
    assert await index.wait_synced(10)
    cache = await synced_cache(index)
    assert cache.timeline is not None
    assert "spec" not in cache.timeline.objects["backup-a"].view  # the index's projection
    assert cache.timeline.objects["backup-a"].view is index.objects(BACKUPS)["backup-a"]
    emulator.fail_next(10**6, 500)  # the index cannot list again with the new field

    assert index.set_config_tenants(with_rule(BY_SOURCE))
    on_views, on_objects = judgements(cache)

    assert on_views == on_objects == {"backup-a": True, "backup-b": True}
    assert cache.timeline.objects["backup-a"].view["spec"] == {"sourceNamespace": "team-a-prod"}
    assert "size" not in cache.timeline.objects["backup-a"].view["spec"]  # only what rules read

    emulator.fail_next(0, 500)
    async with asyncio.timeout(10):
        while "spec" not in index.objects(BACKUPS).get("backup-a", {}):
            await index.wait_change(index.generation)
    assert await index.wait_synced(10)
    # Listed again with the field: the index's projections are shared again, not copies.
    async with asyncio.timeout(10):
        while cache.timeline.objects["backup-a"].view is not index.objects(BACKUPS)["backup-a"]:
            await index.wait_change(index.generation)
    assert judgements(cache)[0] == {"backup-a": True, "backup-b": True}
