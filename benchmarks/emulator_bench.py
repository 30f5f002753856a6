"""Emulator figures for 10,000 namespaces: list (JSON, Table), gets per second, watch fan-out.

Run: /work/venv/bin/python benchmarks/emulator_bench.py [--namespaces 10000] [--watchers 500]
Server and client share one process (one core): gets/s is the pair's throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aiohttp

from tenant_proxy.emulator.app import Emulator
from tenant_proxy.emulator.testing import user_ssl

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def seed(emulator: Emulator, count: int) -> None:
    ns = emulator.registry.lookup("", "v1", "namespaces")
    assert ns is not None
    for i in range(count):
        emulator.cluster.create(
            ns, "", {"metadata": {"name": f"bench-{i:05d}", "labels": {"tenant": f"t{i % 50}"}}}
        )


async def timed_list(s: aiohttp.ClientSession, url: str, accept: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        async with s.get(url, headers={"Accept": accept}) as resp:
            body = await resp.read()
            assert resp.status == 200, body[:200]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def gets_per_second(s: aiohttp.ClientSession, base: str, seconds: float) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        nonlocal done
        i = k
        while time.perf_counter() < deadline:
            async with s.get(f"{base}/api/v1/namespaces/bench-{i % 10000:05d}") as resp:
                await resp.read()
            done += 1
            i += 16

    start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(16)))
    return done / (time.perf_counter() - start)


async def fan_out(emulator: Emulator, s: aiohttp.ClientSession, watchers: int) -> float:
    rv = emulator.store.resource_version
    url = f"{emulator.url}/api/v1/namespaces?watch=1&resourceVersion={rv}"
    responses = [await s.get(url) for _ in range(watchers)]
    # Each response's headers arrive after its watcher registered: all are listening now.
    assert sum(1 for _ in emulator.store.watchers()) == watchers
    start = time.perf_counter()
    await emulator.create(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fan-out"}}
    )
    lines = await asyncio.gather(*(r.content.readline() for r in responses))
    elapsed = time.perf_counter() - start
    assert all(b"fan-out" in line for line in lines)
    for r in responses:
        r.close()
    return elapsed


async def main(namespaces: int, watchers: int) -> None:
    emulator = Emulator()
    t0 = time.perf_counter()
    seed(emulator, namespaces)
    print(f"seeded {namespaces} namespaces in {time.perf_counter() - t0:.2f} s")
    await emulator.start()
    connector = aiohttp.TCPConnector(ssl=user_ssl(emulator, "admin", ["system:masters"]), limit=0)
    try:
        async with aiohttp.ClientSession(connector=connector) as s:
            url = f"{emulator.url}/api/v1/namespaces"
            print(f"list as JSON:  {await timed_list(s, url, 'application/json', 5) * 1000:.0f} ms")
            print(f"list as Table: {await timed_list(s, url, TABLE, 5) * 1000:.0f} ms")
            print(
                f"gets/s (one core, 16 in flight): {await gets_per_second(s, emulator.url, 3):.0f}"
            )
            delivery = await fan_out(emulator, s, watchers)
            print(f"one event to {watchers} watchers: {delivery * 1000:.0f} ms")
    finally:
        await emulator.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--namespaces", type=int, default=10_000)
    parser.add_argument("--watchers", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.namespaces, args.watchers))
