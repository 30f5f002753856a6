"""Memory of the proxy's tenancy index and watch cache holding 100,000 objects (issues 4, 9).

World: 10,000 namespaces over 200 tenants and 90,000 PersistentVolumes bound into them
(100,000 indexed objects: every tenant has the built-in PV rule, so PVs are indexed too).

Two figures:
- RSS: the proxy process's resident memory after its index synced with the world, minus the
  same with an (almost) empty cluster. Includes what the informers' list pages left behind
  (CPython rarely returns freed arenas to the OS): what an operator sees.
- tracemalloc: a `TenancyIndex` in this process, synced against the same emulator; Python
  memory still allocated after a full collection, minus before it started. The index with
  its watch cache (which keeps every filtered object, as the proxy's does), nothing else.

Run: /work/venv/bin/python -m benchmarks.index_memory [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import common
from tenant_proxy.informers.index import TenancyIndex
from tenant_proxy.kube.resources import GroupResource
from tenant_proxy.observability.metrics import Metrics
from tenant_proxy.settings_file import parse_settings
from tenant_proxy.upstream import Upstream

TARGET = 150 * 2**20
USER = "bench-alice"


@dataclass(frozen=True)
class Sizes:
    namespaces: int
    pvs: int
    tenants: int


FULL = Sizes(namespaces=10_000, pvs=90_000, tenants=200)
QUICK = Sizes(namespaces=200, pvs=800, tenants=4)


async def _warm(proxy: common.ProxyProcess) -> None:
    """One tenant list of each indexed resource, so both proxies have run the same code."""
    async with common.session(proxy.ssl_for(USER, [common.tenant_group(0)])) as s:
        for path in ("/api/v1/namespaces", "/api/v1/persistentvolumes?limit=500"):
            await common.timed_get(s, proxy.url + path)


def proxy_rss(workdir: Path, emulator: common.EmulatorProcess, sizes: Sizes) -> tuple[int, float]:
    """The proxy's RSS once synced and warm, and how long the sync took; then it stops."""
    proxy = common.start_proxy(workdir, emulator, common.tenant_configs(sizes.tenants))
    try:
        synced = proxy.wait_synced(150)
        common.run(_warm(proxy))
        return proxy.process.rss(), synced
    finally:
        proxy.process.stop()


def measure(objects: list[dict[str, Any]], sizes: Sizes, *, trace: bool) -> tuple[int, float, int]:
    """(proxy RSS, sync seconds, tracemalloc bytes or 0) against an emulator holding `objects`."""
    with common.workspace() as (workdir, stack):
        emulator = common.started(stack, common.start_emulator(workdir, objects))
        rss, synced = proxy_rss(workdir, emulator, sizes)
        if not trace:
            return rss, synced, 0
        common.progress("proxy measured; now the index in-process under tracemalloc")
        kubeconfig = common.upstream_kubeconfig(workdir, emulator)
        return rss, synced, common.run(traced_index(str(kubeconfig), sizes))


async def traced_index(kubeconfig: str, sizes: Sizes) -> int:
    """Bytes Python still holds for a synced TenancyIndex (tracemalloc, after gc)."""
    settings = parse_settings(
        {
            "tls": {"cert_file": "unused.crt", "key_file": "unused.key"},
            "upstream": {"kubeconfig": kubeconfig},
            "tenancy": {
                "tenants": common.tenant_configs(sizes.tenants),
                "watch_tenant_crds": False,
            },
        },
        environ={},
    )
    upstream = Upstream(settings.upstream)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    index = TenancyIndex(settings.tenancy, upstream, Metrics())
    await index.start()
    if not await index.wait_synced(150):
        raise RuntimeError("the in-process index did not sync")
    await asyncio.sleep(0)  # let the informers move from their lists to their watches
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    count = sum(len(index.objects(gr)) for gr in index.filtered_resources())
    cached = sum(_cached(index, gr) for gr in index.filtered_resources())
    await index.stop()
    await upstream.close()
    if count != sizes.namespaces + sizes.pvs + 4 or cached != count:  # + system namespaces
        raise RuntimeError(f"index holds {count} objects, its watch cache {cached}")
    return held


def _cached(index: TenancyIndex, gr: GroupResource) -> int:
    cache = index.caches.get(gr)
    return len(cache.timeline.objects) if cache is not None and cache.timeline else 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.index_memory")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    sizes = QUICK if parser.parse_args().quick else FULL
    table = common.Table(
        "index_memory: the tenancy index and watch cache holding every filtered object"
    )
    started = time.monotonic()
    full_world = [
        *common.proxy_rbac(),
        *common.namespaces(sizes.namespaces, sizes.tenants),
        *common.persistent_volumes(sizes.pvs, sizes.namespaces),
    ]
    empty_rss, _, _ = measure(common.proxy_rbac(), sizes, trace=False)
    full_rss, sync_seconds, held = measure(full_world, sizes, trace=True)
    total = sizes.namespaces + sizes.pvs
    delta = full_rss - empty_rss
    table.add(
        f"proxy RSS, index of {total} objects (RSS minus empty cluster)",
        common.mib(full_rss),
        common.mib(empty_rss) + " (empty cluster)",
        f"+{common.mib(delta)}",
        "<= 150 MiB",
        delta <= TARGET,
    )
    table.add(
        f"TenancyIndex + watch cache of {total} objects (tracemalloc, in-process)",
        common.mib(held),
        "0 (before start)",
        f"+{common.mib(held)} ({held / total:.0f} B/object)",
        "<= 150 MiB",
        held <= TARGET,
    )
    table.notes += [
        f"{sizes.namespaces} namespaces + {sizes.pvs} PVs; the full proxy synced "
        f"{sync_seconds:.1f}s after its ready line (informer lists of 500 per page).",
        f"Total run time {time.monotonic() - started:.0f}s.",
    ]
    print(table.render(), flush=True)


if __name__ == "__main__":
    main()
