"""Tenant lists of cluster-scoped resources through the proxy beside their baselines (issue 4).

World: 10,000 namespaces over 200 tenants (each owns 50), 20,000 PersistentVolumes each bound
into one of those namespaces (a tenant's claims hold 100 of them).

- namespaces: a tenant's `GET /api/v1/namespaces` is pushed down (the proxy adds
  `kubernetes.io/metadata.name in (...its 50...)` and streams the answer); the baseline is that
  very selector query sent direct. Target: within 1.2x at p50.
- persistentvolumes: the PV rule reads `spec.claimRef.namespace`, which no selector can express,
  so the proxy reads the whole list with its own credentials and rewrites it; the baseline is the
  unfiltered list direct. Target: at most 60 ms added at p50.

Run: /work/venv/bin/python -m benchmarks.tenant_lists [--quick]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp

from benchmarks import common

USER = "bench-alice"
PROXY_USER = "tenant-proxy"  # the proxy's own upstream identity: what it lists as


@dataclass(frozen=True)
class Sizes:
    namespaces: int
    tenants: int
    pvs: int
    ns_rounds: int
    pv_rounds: int
    per_round: int


FULL = Sizes(namespaces=10_000, tenants=200, pvs=20_000, ns_rounds=6, pv_rounds=6, per_round=5)
QUICK = Sizes(namespaces=200, tenants=4, pvs=400, ns_rounds=2, pv_rounds=2, per_round=2)


def owned_namespaces(sizes: Sizes) -> list[str]:
    """Tenant t000's namespaces, as the index assigns them (labelled t000)."""
    return [common.namespace_name(i) for i in range(0, sizes.namespaces, sizes.tenants)]


def name_selector(names: list[str]) -> str:
    """The selector the proxy pushes down for a tenant's namespaces (tenancy.pushdown)."""
    return f"kubernetes.io/metadata.name in ({','.join(sorted(names))})"


async def measure(
    table: common.Table,
    emulator: common.EmulatorProcess,
    proxy: common.ProxyProcess,
    sizes: Sizes,
) -> None:
    selector = quote(name_selector(owned_namespaces(sizes)), safe="")
    async with (
        common.session(proxy.ssl_for(USER, [common.tenant_group(0)])) as tenant,
        common.session(emulator.ssl_for(PROXY_USER)) as direct,
    ):
        await _check_answers(tenant, direct, proxy, emulator, sizes, selector)
        scenarios = [
            (
                f"list {sizes.namespaces} namespaces (tenant owns {len(owned_namespaces(sizes))})",
                "/api/v1/namespaces",
                f"/api/v1/namespaces?labelSelector={selector}",
                sizes.ns_rounds,
            ),
            (
                f"list {sizes.pvs} PVs filtered by claim namespace",
                "/api/v1/persistentvolumes",
                "/api/v1/persistentvolumes",
                sizes.pv_rounds,
            ),
        ]
        results: list[tuple[list[float], list[float]]] = []
        for _name, via, base, rounds in scenarios:

            async def through() -> float:
                return await common.timed_get(tenant, proxy.url + via)  # noqa: B023

            async def baseline() -> float:
                return await common.timed_get(direct, emulator.url + base)  # noqa: B023

            await through(), await baseline()  # warm connections and code paths
            px, bl = await common.interleaved([through, baseline], rounds, sizes.per_round)
            results.append((px, bl))
    (ns_px, ns_bl), (pv_px, pv_bl) = results
    table.add_latencies(
        scenarios[0][0], ns_px, ns_bl, baseline_note=" (same selector, direct)", ratio_at_most=1.2
    )
    table.add_latencies(
        scenarios[1][0], pv_px, pv_bl, baseline_note=" (unfiltered, direct)", added_at_most=0.060
    )
    table.notes.append(
        f"Samples: namespaces {len(ns_px)} each way, PVs {len(pv_px)} each way, in alternating "
        f"rounds of {sizes.per_round}; the proxy's answers were checked (exactly the tenant's "
        "namespaces and PVs) before timing."
    )


async def _check_answers(
    tenant: aiohttp.ClientSession,
    direct: aiohttp.ClientSession,
    proxy: common.ProxyProcess,
    emulator: common.EmulatorProcess,
    sizes: Sizes,
    selector: str,
) -> None:
    """A benchmark of a wrong answer is worthless: the tenant gets exactly its share."""
    owned = set(owned_namespaces(sizes))
    async with tenant.get(f"{proxy.url}/api/v1/namespaces") as resp:
        names = {i["metadata"]["name"] for i in (await resp.json())["items"]}
    async with direct.get(f"{emulator.url}/api/v1/namespaces?labelSelector={selector}") as resp:
        direct_names = {i["metadata"]["name"] for i in (await resp.json())["items"]}
    if names != owned or direct_names != owned:
        raise RuntimeError(f"namespaces: proxy {len(names)}, direct {len(direct_names)}")
    async with tenant.get(f"{proxy.url}/api/v1/persistentvolumes") as resp:
        claims = [i["spec"]["claimRef"]["namespace"] for i in (await resp.json())["items"]]
    if not claims or not set(claims) <= owned or len(claims) != sizes.pvs // sizes.tenants:
        raise RuntimeError(f"PVs: proxy answered {len(claims)} of the tenant's")


def world(sizes: Sizes) -> list[dict[str, object]]:
    return [
        *common.proxy_rbac(),
        *common.namespaces(sizes.namespaces, sizes.tenants),
        *common.persistent_volumes(sizes.pvs, sizes.namespaces),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tenant_lists")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    sizes = QUICK if parser.parse_args().quick else FULL
    table = common.Table("tenant_lists: tenant lists through the proxy vs direct")
    started = time.monotonic()
    with common.workspace() as (workdir, stack):
        emulator = common.started(stack, common.start_emulator(workdir, world(sizes)))
        proxy = common.started(
            stack, common.start_proxy(workdir, emulator, common.tenant_configs(sizes.tenants))
        )
        synced = proxy.wait_synced(120)
        common.run(measure(table, emulator, proxy, sizes))
    table.notes += [
        f"Proxy index synced {synced:.1f}s after its ready line; JSON lists; tenant user "
        f"{USER} (group {common.tenant_group(0)}); baselines as the proxy's own user.",
        f"Total run time {time.monotonic() - started:.0f}s.",
    ]
    print(table.render(), flush=True)


if __name__ == "__main__":
    main()
