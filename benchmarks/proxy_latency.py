"""GET latency (p50, p99) and requests/s through the proxy beside the same GET direct to the
emulator, as the same tenant user, in one run (issue 3).

Scenarios:
- pass-through: GET of a ConfigMap in the tenant's namespace (authenticated, impersonated,
  streamed back untouched);
- filtered: GET of the tenant's own Namespace (read with the proxy's credentials, judged by the
  tenancy index, answered only if owned).

Run: /work/venv/bin/python -m benchmarks.proxy_latency [--quick]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from benchmarks import common

TENANTS = 10
NAMESPACES = 100
USER, GROUP = "bench-alice", common.tenant_group(0)
NAMESPACE = common.namespace_name(0)  # owned by tenant t000


@dataclass(frozen=True)
class Sizes:
    rounds: int
    per_round: int
    concurrency: int
    seconds: float


FULL = Sizes(rounds=5, per_round=100, concurrency=16, seconds=3.0)
QUICK = Sizes(rounds=2, per_round=10, concurrency=4, seconds=0.3)


def world() -> list[dict[str, object]]:
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "bench", "namespace": NAMESPACE},
        "data": {f"key-{i}": "x" * 64 for i in range(16)},  # ~1.5 KB, a typical small object
    }
    return [
        *common.proxy_rbac(),
        *common.namespaces(NAMESPACES, TENANTS),
        common.viewer_binding(NAMESPACE, GROUP),
        configmap,
    ]


async def measure(
    table: common.Table,
    emulator: common.EmulatorProcess,
    proxy: common.ProxyProcess,
    sizes: Sizes,
) -> None:
    scenarios = {
        "pass-through GET configmap": f"/api/v1/namespaces/{NAMESPACE}/configmaps/bench",
        "filtered GET own namespace": f"/api/v1/namespaces/{NAMESPACE}",
    }
    async with (
        common.session(proxy.ssl_for(USER, [GROUP])) as via_proxy,
        common.session(emulator.ssl_for(USER, [GROUP])) as direct,
    ):
        for scenario, path in scenarios.items():

            async def through() -> float:
                return await common.timed_get(via_proxy, proxy.url + path)  # noqa: B023

            async def baseline() -> float:
                return await common.timed_get(direct, emulator.url + path)  # noqa: B023

            for fn in (through, baseline):  # warm connections, caches, code paths
                for _ in range(20):
                    await fn()
            px, base = await common.interleaved([through, baseline], sizes.rounds, sizes.per_round)
            table.add_latencies(scenario, px, base)
            px_rps, base_rps = 0.0, 0.0
            for _ in range(2):  # alternate, as the latency rounds do
                px_rps += await common.throughput(through, sizes.concurrency, sizes.seconds)
                base_rps += await common.throughput(baseline, sizes.concurrency, sizes.seconds)
            table.add(
                f"{scenario} req/s ({sizes.concurrency} in flight)",
                f"{px_rps / 2:.0f}",
                f"{base_rps / 2:.0f}",
                f"{px_rps / base_rps:.2f}x",
                "-",
                None,
            )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.proxy_latency")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    sizes = QUICK if parser.parse_args().quick else FULL
    table = common.Table("proxy_latency: GET through the proxy vs direct to the emulator")
    started = time.monotonic()
    with common.workspace() as (workdir, stack):
        emulator = common.started(stack, common.start_emulator(workdir, world()))
        proxy = common.started(
            stack, common.start_proxy(workdir, emulator, common.tenant_configs(TENANTS))
        )
        proxy.wait_synced(60)
        common.run(measure(table, emulator, proxy, sizes))
    table.notes += [
        f"Same user ({USER}, group {GROUP}) and same TLS client both ways; keep-alive "
        f"connections; latency: {sizes.rounds} alternating rounds of {sizes.per_round} "
        f"sequential GETs each way; req/s: {sizes.concurrency} in flight for "
        f"{sizes.seconds:.1f}s, twice each way, alternating.",
        "No target in issue 3; the ratio is the figure to watch.",
        f"Total run time {time.monotonic() - started:.0f}s.",
    ]
    print(table.render(), flush=True)


if __name__ == "__main__":
    main()
