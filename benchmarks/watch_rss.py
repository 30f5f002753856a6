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

The load generator is part of any fan-out figure: one Python process reading 10,000 TLS streams
takes about as long as the proxy takes to write them. `--clients K` spreads the watchers (through
the proxy and direct alike) over K generator processes, each reading its share; arrival times are
CLOCK_MONOTONIC readings, comparable across the processes of one machine. The generator keeps
its own cost out of the figure where it can: arrivals go to one tally per process (no task per
watcher), and its cyclic collector does not run during a fan-out (a full collection over its
10,000 sessions once took 0.9 s of a 1.2 s wave; progress lines say how long it ran, now 0).

Run: /work/venv/bin/python -m benchmarks.watch_rss [--quick] [--watchers N] [--clients K]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import gc
import os
import ssl
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import orjson
import psutil

from benchmarks import common, stream_floor
from tenant_proxy import pki

GROUP = common.tenant_group(0)
RSS_TARGET = 500 * 2**20
FANOUT_TARGET = 1.0
FANOUT_WAIT = 60.0  # give up on a change that has not reached every watcher by then


@dataclass(frozen=True)
class Sizes:
    namespaces: int
    tenants: int
    watchers: int
    clients: int = 0  # worker processes reading the watches; 0: this process reads them all


FULL = Sizes(namespaces=2_000, tenants=20, watchers=10_000)
QUICK = Sizes(namespaces=200, tenants=4, watchers=20)


class Tally:
    """When each watcher of this process first saw each (type, name): one tally for all, so
    that waiting for a change costs the generator nothing per watcher. (A waiting task per
    watcher, made as the change was sent and woken by each watcher's event, was 10,000 task
    steps on the generator's loop in the middle of the fan-out it measures.)"""

    def __init__(self) -> None:
        self.times: dict[tuple[str, str], list[float]] = {}
        self._wanted: dict[tuple[str, str], tuple[int, asyncio.Future[None]]] = {}

    def saw(self, key: tuple[str, str], when: float) -> None:
        times = self.times.setdefault(key, [])
        times.append(when)
        wanted = self._wanted.get(key)
        if wanted is not None and len(times) >= wanted[0] and not wanted[1].done():
            wanted[1].set_result(None)

    async def all(self, kind: str, name: str, count: int) -> list[float]:
        """The arrival times of (kind, name) at `count` watchers, once all have seen it."""
        key = (kind, name)
        if len(self.times.get(key, ())) < count:
            done = asyncio.get_running_loop().create_future()
            self._wanted[key] = (count, done)
            try:
                await done
            finally:
                del self._wanted[key]
        return list(self.times[key])


class Watcher:
    """One open watch; tells `tally` when it first sees each (type, name)."""

    def __init__(
        self, session: aiohttp.ClientSession, resp: aiohttp.ClientResponse, tally: Tally
    ) -> None:
        self.session, self.resp, self.tally = session, resp, tally
        self.seen: set[tuple[str, str]] = set()
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(aiohttp.ClientError, asyncio.CancelledError):
            async for line in self.resp.content:
                when = time.monotonic()
                event = orjson.loads(line)
                name = (event.get("object") or {}).get("metadata", {}).get("name", "")
                key = (event.get("type", ""), name)
                if key not in self.seen:
                    self.seen.add(key)
                    self.tally.saw(key, when)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.resp.close()
        await self.session.close()


async def open_watches(
    contexts: Sequence[ssl.SSLContext], url: str, tally: Tally, batch: int = 50
) -> list[Watcher]:
    """Open one watch per context, `batch` TLS handshakes at a time."""

    async def one(ctx: ssl.SSLContext) -> Watcher:
        session = common.session(ctx)
        resp = await session.get(url, headers={"Accept": "application/json"})
        if resp.status != 200:
            body = await resp.read()
            await session.close()
            raise RuntimeError(f"watch refused: {resp.status} {body[:200]!r}")
        return Watcher(session, resp, tally)

    watchers: list[Watcher] = []
    for start in range(0, len(contexts), batch):
        watchers += await asyncio.gather(*(one(c) for c in contexts[start : start + batch]))
    return watchers


class Fleet(Protocol):
    """Open watches, in this process or spread over worker processes."""

    async def arrivals(self, kind: str, name: str) -> list[float]:
        """When each watcher saw (kind, name): CLOCK_MONOTONIC seconds."""

    async def close(self) -> None: ...


class LocalFleet:
    """Every watcher read by this process."""

    def __init__(self, watchers: list[Watcher], tally: Tally) -> None:
        self.watchers, self.tally = watchers, tally

    @classmethod
    async def open(cls, contexts: Sequence[ssl.SSLContext], url: str) -> LocalFleet:
        tally = Tally()
        return cls(await open_watches(contexts, url, tally), tally)

    async def arrivals(self, kind: str, name: str) -> list[float]:
        return await self.tally.all(kind, name, len(self.watchers))

    async def close(self) -> None:
        await asyncio.gather(*(w.close() for w in self.watchers))


@dataclass(frozen=True)
class Spec:
    """What one worker process opens: `count` watches of `url`, as `user` (or `user` + a
    number each, when `numbered`) of `groups`, with certificates from the CA at `ca`."""

    url: str
    ca: str  # directory with ca.crt / ca.key: the listener's CA, which also issues clients
    user: str
    numbered: bool
    first: int
    count: int
    groups: tuple[str, ...]
    workdir: str

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "benchmarks.watch_rss",
            "--worker",
            orjson.dumps(dataclasses.asdict(self)).decode(),
        ]


class WorkerFleet:
    """Watchers spread over worker processes (`--clients K`), each reading its share."""

    def __init__(self, workers: list[asyncio.subprocess.Process]) -> None:
        self.workers = workers

    @classmethod
    async def open(cls, specs: Sequence[Spec]) -> WorkerFleet:
        workers = [
            await asyncio.create_subprocess_exec(
                *spec.argv(),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=common.REPO,
            )
            for spec in specs
        ]
        fleet = cls(workers)
        replies = await asyncio.gather(*(fleet._reply(w) for w in workers))
        if any(r != b"ready" for r in replies):
            raise RuntimeError(f"a watch worker failed: {replies}")
        return fleet

    async def _reply(self, worker: asyncio.subprocess.Process) -> bytes:
        assert worker.stdout is not None
        return (await worker.stdout.readline()).strip()

    async def _ask(self, command: str) -> list[bytes]:
        for worker in self.workers:
            assert worker.stdin is not None
            worker.stdin.write(command.encode() + b"\n")
        return list(await asyncio.gather(*(self._reply(w) for w in self.workers)))

    async def arrivals(self, kind: str, name: str) -> list[float]:
        times: list[float] = []
        for reply in await self._ask(f"wait {kind} {name}"):
            times += orjson.loads(reply)
        return times

    async def close(self) -> None:
        await self._ask("close")
        await asyncio.gather(*(w.wait() for w in self.workers))


def specs(
    url: str, ca: Path, user: str | None, groups: Sequence[str], sizes: Sizes, workdir: Path
) -> list[Spec]:
    """The watchers split evenly over `sizes.clients` workers: all as `user`, or (None) each
    a distinct user of `groups`, as the proxy's watchers are."""
    numbered = user is None
    user = user or "watcher-"
    share, extra = divmod(sizes.watchers, sizes.clients)
    out, first = [], 0
    for i in range(sizes.clients):
        count = share + (1 if i < extra else 0)
        out.append(Spec(url, str(ca), user, numbered, first, count, tuple(groups), str(workdir)))
        first += count
    return out


async def worker(spec: Spec) -> None:
    """A worker process: open the watches, then answer `wait KIND NAME` (a JSON list of
    arrival times) and `close` on stdin, one line each."""
    ca = pki.KeyPair.read(Path(spec.ca) / "ca.crt", Path(spec.ca) / "ca.key")
    # Per process: every worker writes its own key files (one user may be in several workers).
    where = Path(spec.workdir) / "clients" / f"worker-{os.getpid()}"

    def context(i: int) -> ssl.SSLContext:
        user = f"{spec.user}{i:05d}" if spec.numbered else spec.user
        pair = pki.issue_client_cert(ca, user, list(spec.groups))
        return common.client_ssl(ca.cert_pem, pair, where / f"{Path(spec.ca).name}-{user}")

    if spec.numbered:
        contexts = [context(i) for i in range(spec.first, spec.first + spec.count)]
    else:
        contexts = [context(0)] * spec.count
    fleet = await LocalFleet.open(contexts, spec.url)
    # As in `fan_out`: no collection of the worker's own inside a wave it times (its waves come
    # unannounced: the change is sent before `wait`), so none at all once its watches are open.
    gc.collect()
    gc.disable()
    print("ready", flush=True)
    while line := await asyncio.to_thread(sys.stdin.readline):
        command, *args = line.split()
        if command == "wait":
            seen = await asyncio.wait_for(fleet.arrivals(*args), FANOUT_WAIT)
            print(orjson.dumps(seen).decode(), flush=True)
        else:
            await fleet.close()
            print("closed", flush=True)
            return


class Collections:
    """The seconds this process spent in the cyclic collector (its own pauses, not the
    proxy's), told apart per fan-out in the notes."""

    seconds = 0.0
    count = 0
    _began = 0.0

    @classmethod
    def watch(cls) -> None:
        gc.callbacks.append(cls._callback)

    @classmethod
    def _callback(cls, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            cls._began = time.perf_counter()
        else:
            cls.seconds += time.perf_counter() - cls._began
            cls.count += 1


async def fan_out(
    fleet: Fleet, change: Callable[[], Any], kind: str, name: str
) -> tuple[float, float]:
    """Seconds from sending `change` until the median and the last watcher saw (kind, name)."""
    # The generator's own collector must not run inside the wave it times: a full collection
    # over its 10,000 sessions took 0.9 s of a 1.2 s DELETED wave. Collected before, off during
    # (events are freed by reference counting; nothing cyclic piles up in one wave).
    gc.collect()
    paused, collections = Collections.seconds, Collections.count
    gc.disable()
    try:
        start = time.monotonic()
        await change()
        seen = await asyncio.wait_for(fleet.arrivals(kind, name), FANOUT_WAIT)
    finally:
        gc.enable()
    delays = sorted(t - start for t in seen)
    common.progress(
        f"{kind} {name}: generator's collector ran {Collections.count - collections} times, "
        f"{Collections.seconds - paused:.3f}s, in this process"
    )
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
    fleet: Fleet, admin: Admin, name: str
) -> tuple[tuple[float, float], tuple[float, float]]:
    joined = await fan_out(fleet, lambda: admin.create(name, common.tenant_name(0)), "ADDED", name)
    left = await fan_out(fleet, lambda: admin.relabel(name, common.tenant_name(1)), "DELETED", name)
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
    floor_idle: int = 0
    floor_open: int = 0


async def open_fleet(
    sizes: Sizes,
    url: str,
    ca: Path,
    user: str | None,
    groups: Sequence[str],
    contexts: Callable[[], list[ssl.SSLContext]],
    workdir: Path,
) -> Fleet:
    """The watches of `url`: read here (`contexts` made here), or by `sizes.clients` workers."""
    if sizes.clients:
        return await WorkerFleet.open(specs(url, ca, user, groups, sizes, workdir))
    built = contexts()
    common.progress(f"{len(built)} client certificates minted")
    return await LocalFleet.open(built, url)


async def measure(
    emulator: common.EmulatorProcess,
    proxy: common.ProxyProcess,
    floor: stream_floor.FloorProcess,
    sizes: Sizes,
) -> Figures:
    fig = Figures()
    admin = Admin(emulator)
    rv = await resource_version(
        proxy.ssl_for("watcher-list", [GROUP]), f"{proxy.url}/api/v1/namespaces"
    )
    fig.rss_idle = proxy.process.rss()
    fig.upstream_idle = upstream_connections(proxy, emulator)
    watchers = functools.cache(
        lambda: [proxy.ssl_for(f"watcher-{i:05d}", [GROUP]) for i in range(sizes.watchers)]
    )
    start = time.perf_counter()
    fleet = await open_fleet(
        sizes,
        f"{proxy.url}/api/v1/namespaces?watch=1&resourceVersion={rv}",
        proxy.workdir / "proxy",
        None,
        [GROUP],
        watchers,
        proxy.workdir,
    )
    fig.open_seconds = time.perf_counter() - start
    fig.rss_open = proxy.process.rss()
    fig.upstream_open = upstream_connections(proxy, emulator)
    common.progress(f"{sizes.watchers} watches open through the proxy")
    try:
        fig.proxy_join, fig.proxy_leave = await changes(fleet, admin, "fanout-proxy")
        fig.rss_after = proxy.process.rss()
    finally:
        await fleet.close()
    common.progress("proxy fan-out measured; direct watches next")
    selector = quote(f"{common.TENANT_LABEL}={common.tenant_name(0)}", safe="")
    direct_ctx = emulator.ssl_for("tenant-proxy")
    rv = await resource_version(direct_ctx, f"{emulator.url}/api/v1/namespaces")
    url = f"{emulator.url}/api/v1/namespaces?watch=1&resourceVersion={rv}&labelSelector={selector}"
    fleet = await open_fleet(
        sizes,
        url,
        emulator.workdir / "emulator",
        "tenant-proxy",
        [],
        lambda: [direct_ctx] * sizes.watchers,
        emulator.workdir,
    )
    try:
        fig.direct_join, fig.direct_leave = await changes(fleet, admin, "fanout-direct")
    finally:
        await fleet.close()
        await admin.session.close()
    fig.floor_idle, fig.floor_open = await floor_rss(floor, proxy, sizes, watchers)
    return fig


async def floor_rss(
    floor: stream_floor.FloorProcess,
    proxy: common.ProxyProcess,
    sizes: Sizes,
    watchers: Callable[[], list[ssl.SSLContext]],
) -> tuple[int, int]:
    """The floor server's RSS warm and idle, and with the watchers' streams open to it (the
    same client certificates, one TLS connection each, as through the proxy)."""
    url = f"{floor.url}/api/v1/namespaces?watch=1"
    warm = await LocalFleet.open([proxy.ssl_for("floor-warm-up", [GROUP])], url)
    await warm.close()
    idle = floor.process.rss()
    fleet = await open_fleet(
        sizes, url, proxy.workdir / "proxy", None, [GROUP], watchers, proxy.workdir
    )
    try:
        common.progress(f"{sizes.watchers} streams open to the floor server")
        return idle, floor.process.rss()
    finally:
        await fleet.close()


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
    floor_open = fig.floor_open - fig.floor_idle
    table.add(
        f"floor: a bare aiohttp server, same TLS and clients, {sizes.watchers} streams open",
        common.mib(fig.floor_open),
        common.mib(fig.floor_idle) + " (idle, warm)",
        f"+{common.mib(floor_open)} ({floor_open / sizes.watchers / 1024:.0f} KiB/stream)",
        "-",
        None,
    )
    table.add(
        "proxy's own memory per watch, above the floor's per stream",
        f"{(fig.rss_open - fig.rss_idle - floor_open) / sizes.watchers / 1024:.1f} KiB",
        f"{floor_open / sizes.watchers / 1024:.1f} KiB (floor)",
        "",
        "-",
        None,
    )
    table.add(
        f"proxy connections to the API server, {sizes.watchers} watches open",
        str(fig.upstream_open),
        f"{fig.upstream_idle} (idle, synced)",
        f"+{fig.upstream_open - fig.upstream_idle}",
        "no more than idle",
        fig.upstream_open <= fig.upstream_idle,
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
    parser.add_argument(
        "--clients",
        type=int,
        default=0,
        help="worker processes that read the watches (default: this one process reads all)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a worker's Spec, as JSON
    args = parser.parse_args()
    if args.worker:
        common.run(worker(Spec(**orjson.loads(args.worker))))
        return
    Collections.watch()
    sizes = QUICK if args.quick else FULL
    sizes = dataclasses.replace(sizes, clients=args.clients)
    if args.namespaces:
        sizes = dataclasses.replace(sizes, namespaces=args.namespaces)
    if args.watchers:
        sizes = dataclasses.replace(sizes, watchers=args.watchers)
    readers = f"{sizes.clients} client processes" if sizes.clients else "one client process"
    table = common.Table(
        f"watch_rss: {sizes.watchers} concurrent tenant watches, one worker; {readers}"
    )
    started = time.monotonic()
    world = [*common.proxy_rbac(), *common.namespaces(sizes.namespaces, sizes.tenants)]
    with common.workspace() as (workdir, stack):
        emulator = common.started(stack, common.start_emulator(workdir, world))
        proxy = common.started(
            stack,
            common.start_proxy(
                workdir,
                emulator,
                common.tenant_configs(sizes.tenants),
                # Every watcher comes from 127.0.0.1: the per-address cap (1,024 by default,
                # meant for clients on the network) and the listener's (8,192) would refuse them.
                limits={"max_connections": 4 * sizes.watchers, "max_connections_per_address": 0},
            ),
        )
        proxy.wait_synced(60)
        floor = common.started(stack, stream_floor.start_floor(workdir, workdir / "proxy"))
        fig = common.run(measure(emulator, proxy, floor, sizes))
    report(table, fig, sizes)
    table.notes += [
        f"{sizes.namespaces} namespaces over {sizes.tenants} tenants; each watcher a distinct "
        f"user of t000 with its own TLS connection; {sizes.watchers} watches opened in "
        f"{fig.open_seconds:.1f}s (50 handshakes at a time per client process).",
        f"Watches read by {readers} (direct baseline alike).",
        "Delays run from sending the change to the emulator to the event's arrival at the "
        "client; the direct baseline's watchers share one identity.",
        f"Total run time {time.monotonic() - started:.0f}s.",
    ]
    print(table.render(), flush=True)


if __name__ == "__main__":
    main()
