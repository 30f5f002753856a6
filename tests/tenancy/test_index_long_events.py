"""An upstream watch event longer than `limits.max_watch_event_bytes`: the informer lists again
(reading pages, not lines) and moves past it, rather than watching again from the same version
and meeting the same event for ever."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kube_objects import namespace

from tenant_proxy.demo import TENANTS, demo_world
from tenant_proxy.emulator.app import Emulator
from tenant_proxy.identity import Identity
from tenant_proxy.informers.index import TenancyIndex
from tenant_proxy.kube.resources import NAMESPACES
from tenant_proxy.observability.metrics import Metrics
from tenant_proxy.settings_file import parse_settings
from tenant_proxy.upstream import Upstream

ALICE = Identity(user="alice", groups=("tenant-a-devs",))
MAX_EVENT = 4096


async def test_an_event_past_the_limit_is_read_by_listing_again(tmp_path: Path) -> None:
    emulator = Emulator(seed_objects=demo_world())
    await emulator.start()
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig", "tenant-proxy")
    settings = parse_settings(
        {
            "tls": {"cert_file": "unused.crt", "key_file": "unused.key"},
            "upstream": {"kubeconfig": str(kubeconfig)},
            "tenancy": {"tenants": TENANTS},
            "limits": {"max_watch_event_bytes": MAX_EVENT},
        },
        environ={},
    )
    upstream = Upstream(settings.upstream)
    index = TenancyIndex(
        settings.tenancy,
        upstream,
        Metrics(),
        max_event_bytes=settings.limits.max_watch_event_bytes,
    )
    await index.start()
    try:
        assert await index.wait_synced(10)
        assert index.view_for(ALICE) is not None
        long_note = "x" * (2 * MAX_EVENT)
        await emulator.create(namespace("team-a-long", "team-a", note=long_note))
        # Then a short one: it comes only after the informer has moved past the long event.
        await emulator.create(namespace("team-a-short", "team-a"))
        async with asyncio.timeout(30):
            while not {"team-a-long", "team-a-short"} <= index.objects(NAMESPACES).keys():
                await asyncio.sleep(0.05)
        informer = index._resources.informers[NAMESPACES]
        assert informer.relists >= 1
    finally:
        await index.stop()
        await upstream.close()
        await emulator.stop()
