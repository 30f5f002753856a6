"""A tenant's lists as kubectl makes them, served from the watch cache, beside the same lists
with the cache off and the same answers direct to the API server (issue 9).

World: 10,000 namespaces over 200 tenants (each owns 50), 20,000 PersistentVolumes each bound
into one of those namespaces (a tenant holds 100). The tenant asks what `kubectl get` asks
(`limit=500`, a consistent read), in JSON and as a Table.

- cache on: the proxy answers from its watch cache (after a `limit=1` freshness probe).
- cache off (`limits.lists_from_cache: false`): the same proxy build reads upstream and
  rewrites (namespaces: selector pushed down; PVs: upstream pages judged).
- direct, the same answer: namespaces with the tenant's label selector (the API server filters);
  PVs have no selector for claimRef, so direct is the first page of 500 of all PVs (what
  `kubectl get pv` as an admin reads first).
Goal: cache on <= 0.5x direct at p50.

Beside them, where a consistent read's time goes: the same list from the cache with
`resourceVersion=0` (no freshness probe), and the probe's own read direct (`limit=1`).

Run: /work/venv/bin/python -m benchmarks.cached_lists [--quick]
"""

from __future__ import annotations

import argparse
import time
from urllib.parse import quote

import aiohttp

from benchmarks import common
from benchmarks.tenant_lists import FULL, QUICK, USER, Sizes, owned_namespaces, world

PROXY_USER = "tenant-proxy"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
GOAL = 0.5


async def measure(
    table: common.Table,
    emulator: common.EmulatorProcess,
    cached: common.ProxyProcess,
    uncached: common.ProxyProcess,
    sizes: Sizes,
) -> None:
    group = [common.tenant_group(0)]
    label = quote(f"{common.TENANT_LABEL}={common.tenant_name(0)}", safe="")
    async with (
        common.session(cached.ssl_for(USER, group)) as on,
        common.session(uncached.ssl_for(USER, group)) as off,
        common.session(emulator.ssl_for(PROXY_USER)) as direct,
    ):
        await _check(on, cached, sizes)
        await _check(off, uncached, sizes)
        for resource, base in (
            ("namespaces", f"/api/v1/namespaces?limit=500&labelSelector={label}"),
            ("persistentvolumes", "/api/v1/persistentvolumes?limit=500"),
        ):
            for form, accept in (("JSON", "application/json"), ("Table", TABLE)):
                via = f"/api/v1/{resource}?limit=500"

                async def cache_on() -> float:
                    return await common.timed_get(on, cached.url + via, accept)  # noqa: B023

                async def cache_off() -> float:
                    return await common.timed_get(off, uncached.url + via, accept)  # noqa: B023

                async def baseline() -> float:
                    return await common.timed_get(direct, emulator.url + base, accept)  # noqa: B023

                async def unprobed() -> float:
                    url = f"{cached.url}{via}&resourceVersion=0"  # noqa: B023
                    return await common.timed_get(on, url, accept)  # noqa: B023

                async def probe() -> float:
                    url = f"{emulator.url}/api/v1/{resource}?limit=1"  # noqa: B023
                    return await common.timed_get(direct, url)

                fns = [cache_on, cache_off, baseline, unprobed, probe]
                for warm in fns:
                    await warm()  # connections, code paths, the cache's rows
                rounds = sizes.ns_rounds if resource == "namespaces" else sizes.pv_rounds
                px, px_off, bl, px_rv0, probed = await common.interleaved(
                    fns, rounds, sizes.per_round
                )
                what = f"{resource} {form}, tenant's share (limit=500)"
                table.add_latencies(
                    f"{what}: cache on", px, bl, baseline_note=" (direct)", ratio_at_most=GOAL
                )
                table.add_latencies(f"{what}: cache off", px_off, bl, baseline_note=" (direct)")
                table.add_latencies(f"{what}: cache on, resourceVersion=0 (no probe)", px_rv0, bl)
                if form == "JSON":
                    table.add_latencies(
                        f"{resource}: the probe's read direct (limit=1)", probed, bl
                    )


async def _check(session: aiohttp.ClientSession, proxy: common.ProxyProcess, sizes: Sizes) -> None:
    """A benchmark of a wrong answer is worthless: the tenant gets exactly its share."""
    owned = set(owned_namespaces(sizes))
    async with session.get(f"{proxy.url}/api/v1/namespaces") as resp:
        names = {i["metadata"]["name"] for i in (await resp.json())["items"]}
    async with session.get(f"{proxy.url}/api/v1/persistentvolumes") as resp:
        claims = [i["spec"]["claimRef"]["namespace"] for i in (await resp.json())["items"]]
    if names != owned or not set(claims) <= owned or len(claims) != sizes.pvs // sizes.tenants:
        raise RuntimeError(f"answers: {len(names)} namespaces, {len(claims)} PVs")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cached_lists")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    sizes = QUICK if parser.parse_args().quick else FULL
    table = common.Table("cached_lists: a tenant's kubectl lists, cache on / off vs direct")
    started = time.monotonic()
    tenants = common.tenant_configs(sizes.tenants)
    with common.workspace() as (workdir, stack):
        emulator = common.started(stack, common.start_emulator(workdir, world(sizes)))
        cached = common.started(stack, common.start_proxy(workdir, emulator, tenants))
        uncached = common.started(
            stack,
            common.start_proxy(
                workdir, emulator, tenants, limits={"lists_from_cache": False}, name="proxy-off"
            ),
        )
        cached.wait_synced(120)
        uncached.wait_synced(120)
        # The emulator's idle bookmarks bring each cache to the current version within a
        # second: from then on consistent reads are the cache's.
        time.sleep(2)  # a quiet world settling, outside any event loop
        common.run(measure(table, emulator, cached, uncached, sizes))
    table.notes += [
        f"{sizes.namespaces} namespaces / {sizes.pvs} PVs over {sizes.tenants} tenants; tenant "
        f"{USER} owns {sizes.namespaces // sizes.tenants} namespaces and "
        f"{sizes.pvs // sizes.tenants} PVs; consistent reads (no resourceVersion), as kubectl.",
        f"Total run time {time.monotonic() - started:.0f}s.",
    ]
    print(table.render(), flush=True)


if __name__ == "__main__":
    main()
