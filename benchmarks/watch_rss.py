"""10,000 concurrent filtered watches on one proxy worker: its RSS, its upstream connections,
and how fast one namespace change reaches every watcher (issues 4 and 9).

Each watcher is a distinct user of tenant t000 (group t000-devs) running what `kubectl get ns -w`
does: a list, then `GET /api/v1/namespaces?watch=1&resourceVersion=<the list's>` through the
proxy, each on its own TLS connection. Every watch is served from the proxy's watch cache: the
upstream connections stay those of its informers, whatever the number of watches.

Figures:
- proxy RSS idle (synced, warm) and with every watch open; target <= 500 MiB with 10,000;
- the proxy's TCP connections to the API server, idle and with every watch open (constant);
- a namespace created for t000 (it joins the tenant), then relabelled to t001 (it leaves):
  seconds until every watcher has its ADDED, then its DELETED. Target 1 s. Baseline: the same
  number of plain watches direct to the emulator with the tenant's label selector, same changes.

Run: /work/venv/bin/python -m benchmarks.watch_rss [--quick] [--watchers N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import psutil

from benchmarks import common

GROUP = common.tenant_group(0)
RSS_TARGET = 500 * 2**20
FANOUT_TARGET = 1.0
FANOUT_WAIT = 60.0  # give up on a change that has not reached every watcher by then


@dataclass(frozen=True)
class Sizes:
    namespaces: int
    tenants: int
    watchers: int


FULL = Sizes(namespaces=2_000, tenants=20, watchers=10_000)
QUICK = Sizes(namespaces=200, tenants=4, watchers=20)


class Watcher:
    """One open watch; records when it sees the event it is waiting for."""

    def __init__(self, session: aiohttp.ClientSession, resp: aiohttp.ClientResponse) -> None:
        self.session, self.resp = session, resp
        self.seen: dict[tuple[str, str], float] = {}
        self.changed = asyncio.Event()
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(aiohttp.ClientError, asyncio.CancelledError):
            async for line in self.resp.content:
                event = orjson.loads(line)
                name = (event.get("object") or {}).get("metadata", {}).get("name", "")
                self.seen.setdefault((event.get("type", ""), name), time.perf_counter())
                self.changed.set()

    async def wait_for(self, kind: str, name: str) -> float:
        while (kind, name) not in self.seen:
            self.changed.clear()
            await self.changed.wait()
        return self.seen[(kind, name)]

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.resp.close()
        await self.session.close()


async def open_watches(
    contexts: Sequence[ssl.SSLContext], url: str, batch: int = 50
) -> list[Watcher]:
    """Open one watch per context, `batch` TLS handshakes at a time."""

    async def one(ctx: ssl.SSLContext) -> Watcher:
        session = common.session(ctx)
        resp = await session.get(url, headers={"Accept": "application/json"})
        if resp.status != 200:
            body = await resp.read()
            await session.close()
            raise RuntimeError(f"watch refused: {resp.status} {body[:200]!r}")
        return Watcher(session, resp)

    watchers: list[Watcher] = []
    for start in range(0, len(contexts), batch):
        watchers += await asyncio.gather(*(one(c) for c in contexts[start : start + batch]))
    return watchers


async def fan_out(
    watchers: list[Watcher], change: Callable[[], Any], kind: str, name: str
) -> tuple[float, float]:
    """Seconds from sending `change` until the median and the last watcher saw (kind, name)."""
    start = time.perf_counter()
    await change()
    seen = await asyncio.wait_for(
        asyncio.gather(*(w.wait_for(kind, name) for w in watchers)), FANOUT_WAIT
    )
    delays = sorted(t - start for t in seen)
    return common.p50(delays), delays[-1]


class Admin:
    """Namespace changes sent direct to the emulator as a cluster admin."""

    def __init__(self, emulator: common.EmulatorProcess) -> None:
        self.url = emulator.url
        self.session = common.session(emulator.ssl_for("bench-admin", ["system:masters"]))

    async def create(self, name: str, tenant: str) -> None:
        body = {"metadata": {"name": name, "labels": {common.TENANT_LABEL: tenant}}}
        async with self.session.post(f"{self.url}/api/v1/namespaces", json=body) as resp:
            if resp.status != 201:
                raise RuntimeError(f"create {name}: {resp.status} {await resp.text()}")

    async def relabel(self, name: str, tenant: str) -> None:
        patch = {"metadata": {"labels": {common.TENANT_LABEL: tenant}}}
        async with self.session.patch(
            f"{self.url}/api/v1/namespaces/{name}",
            data=orjson.dumps(patch),
            headers={"Content-Type": "application/merge-patch+json"},
        ) as resp:
            if resp.status != 200:
                raise RuntimeError(f"relabel {name}: {resp.status} {await resp.text()}")


def upstream_connections(proxy: common.ProxyProcess, emulator: common.EmulatorProcess) -> int:
    """The proxy process's established TCP connections to the API server."""
    port = int(emulator.url.rsplit(":", 1)[1])
    conns = psutil.Process(proxy.process.pid).net_connections(kind="tcp")
    return sum(1 for c in conns if c.raddr and c.raddr.port == port and c.status == "ESTABLISHED")


async def resource_version(ctx: ssl.SSLContext, url: str) -> str:
    async with common.session(ctx) as s, s.get(url) as resp:
        doc = await resp.json()
        return str(doc["metadata"]["resourceVersion"])


async def changes(
    watchers: list[Watcher], admin: Admin, name: str
) -> tuple[tuple[float, float], tuple[float, float]]:
    joined = await fan_out(
        watchers, lambda: admin.create(name, common.tenant_name(0)), "ADDED", name
    )
    left = await fan_out(
        watchers, lambda: admin.relabel(name, common.tenant_name(1)), "DELETED", name
    )
    return joined, left


@dataclass
class Figures:
    rss_idle: int = 0
    rss_open: int = 0
    rss_after: int = 0
    upstream_idle: int = 0
    upstream_open: int = 0
    open_seconds: float = 0.0
    proxy_join: tuple[float, float] = (0.0, 0.0)
    proxy_leave: tuple[float, float] = (0.0, 0.0)
    direct_join: tuple[float, float] = (0.0, 0.0)
    direct_leave: tuple[float, float] = (0.0, 0.0)


async def measure(
    emulator: common.EmulatorProcess, proxy: common.ProxyProcess, sizes: Sizes
) -> Figures:
    fig = Figures()
    admin = Admin(emulator)
    users = [f"watcher-{i:04d}" for i in range(sizes.watchers)]
    contexts = [proxy.ssl_for(user, [GROUP]) for user in users]
    common.progress(f"{sizes.watchers} client certificates minted")
    rv = await resource_version(contexts[0], f"{proxy.url}/api/v1/namespaces")
    fig.rss_idle = proxy.process.rss()
    fig.upstream_idle = upstream_connections(proxy, emulator)
    start = time.perf_counter()
    watchers = await open_watches(
        contexts, f"{proxy.url}/api/v1/namespaces?watch=1&resourceVersion={rv}"
    )
    fig.open_seconds = time.perf_counter() - start
    fig.rss_open = proxy.process.rss()
    fig.upstream_open = upstream_connections(proxy, emulator)
    common.progress(f"{len(watchers)} watches open through the proxy")
    try:
        fig.proxy_join, fig.proxy_leave = await changes(watchers, admin, "fanout-proxy")
        fig.rss_after = proxy.process.rss()
    finally:
        await asyncio.gather(*(w.close() for w in watchers))
    common.progress("proxy fan-out measured; direct watches next")
    selector = quote(f"{common.TENANT_LABEL}={common.tenant_name(0)}", safe="")
    direct_ctx = emulator.ssl_for("tenant-proxy")
    rv = await resource_version(direct_ctx, f"{emulator.url}/api/v1/namespaces")
    url = f"{emulator.url}/api/v1/namespaces?watch=1&resourceVersion={rv}&labelSelector={selector}"
    watchers = await open_watches([direct_ctx] * sizes.watchers, url)
    try:
        fig.direct_join, fig.direct_leave = await changes(watchers, admin, "fanout-direct")
    finally:
        await asyncio.gather(*(w.close() for w in watchers))
        await admin.session.close()
    return fig


def report(table: common.Table, fig: Figures, sizes: Sizes) -> None:
    table.add(
        f"proxy RSS with {sizes.watchers} filtered watches open",
        common.mib(fig.rss_open),
        common.mib(fig.rss_idle) + " (idle, synced)",
        f"+{common.mib(fig.rss_open - fig.rss_idle)} "
        f"({(fig.rss_open - fig.rss_idle) / sizes.watchers / 1024:.0f} KiB/watch)",
        "<= 500 MiB",
        fig.rss_open <= RSS_TARGET,
    )
    table.add(
        f"proxy connections to the API server, {sizes.watchers} watches open",
        str(fig.upstream_open),
        f"{fig.upstream_idle} (idle, synced)",
        f"+{fig.upstream_open - fig.upstream_idle}",
        "constant",
        fig.upstream_open == fig.upstream_idle,
    )
    table.add(
        "proxy RSS after the two changes below",
        common.mib(fig.rss_after),
        common.mib(fig.rss_idle) + " (idle, synced)",
        f"+{common.mib(fig.rss_after - fig.rss_idle)}",
        "<= 500 MiB",
        fig.rss_after <= RSS_TARGET,
    )
    for label, px, direct in (
        ("namespace joins the tenant: ADDED", fig.proxy_join, fig.direct_join),
        ("namespace leaves the tenant: DELETED", fig.proxy_leave, fig.direct_leave),
    ):
        table.add(
            f"{label} at all {sizes.watchers} watchers (last)",
            f"{px[1]:.3f} s",
            f"{direct[1]:.3f} s (selector watches, direct)",
            f"{px[1] / direct[1]:.1f}x",
            "<= 1 s",
            px[1] <= FANOUT_TARGET,
        )
        table.add(
            f"{label} (median watcher)",
            f"{px[0]:.3f} s",
            f"{direct[0]:.3f} s",
            f"{px[0] / direct[0]:.1f}x",
            "-",
            None,
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.watch_rss")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--namespaces", type=int, help=f"cluster size (default {FULL.namespaces})")
    parser.add_argument("--watchers", type=int, help=f"watches (default {FULL.watchers})")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.namespaces:
        sizes = dataclasses.replace(sizes, namespaces=args.namespaces)
    if args.watchers:
        sizes = dataclasses.replace(sizes, watchers=args.watchers)
    table = common.Table(f"watch_rss: {sizes.watchers} concurrent tenant watches, one worker")
    started = time.monotonic()
    world = [*common.proxy_rbac(), *common.namespaces(sizes.namespaces, sizes.tenants)]
    with common.workspace() as (workdir, stack):
        emulator = common.started(stack, common.start_emulator(workdir, world))
        proxy = common.started(
            stack, common.start_proxy(workdir, emulator, common.tenant_configs(sizes.tenants))
        )
        proxy.wait_synced(60)
        fig = common.run(measure(emulator, proxy, sizes))
    report(table, fig, sizes)
    table.notes += [
        f"{sizes.namespaces} namespaces over {sizes.tenants} tenants; each watcher a distinct "
        f"user of t000 with its own TLS connection; {sizes.watchers} watches opened in "
        f"{fig.open_seconds:.1f}s (50 handshakes at a time).",
        "Delays run from sending the change to the emulator to the event's arrival at the "
        "client; the direct baseline's watchers share one identity.",
        f"Total run time {time.monotonic() - started:.0f}s.",
    ]
    print(table.render(), flush=True)


if __name__ == "__main__":
    main()
