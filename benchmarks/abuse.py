"""Another tenant's GET (p50, p99) while the proxy is abused, beside the same GET unabused, in one
run; and the proxy's RSS before the abuse, while it holds the connections, and after (issue 10).

Abuses, each from its own process while the tenant's GETs are sampled:
- (a) compression bombs: one client POSTs 3 MiB gzip bodies (3 GiB inflated) back to back, in
  several rounds (see `bomb_rounds`): each bomb disturbs one or two GETs, and a round sees only
  a few bombs, so one round's p99 is decided by a handful of events; the median of the rounds'
  ratios is the figure judged;
- (b) 2,000 idle TLS connections (handshake done, nothing sent) and 200 with half a request head,
  from 100 client addresses (127.0.1.x: loopback is a /8), as a crowd of clients would;
- (c) a slow reader: a watch whose initial events (2,000 ConfigMaps of 8 KiB, ~16 MiB) it never
  reads.

Run: /work/venv/bin/python -m benchmarks.abuse [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import ssl
import statistics
import time
import urllib.request
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from benchmarks import common

TENANTS = 10
NAMESPACES = 100
USER, GROUP = "bench-alice", common.tenant_group(0)
NAMESPACE = common.namespace_name(0)  # owned by tenant t000
ABUSER, ABUSER_GROUP = "bench-mallory", common.tenant_group(1)
ABUSER_NAMESPACE = common.namespace_name(1)  # owned by tenant t001
PATH = f"/api/v1/namespaces/{NAMESPACE}/configmaps/bench"
CROWD_ADDRESSES = 100  # client addresses the held connections of (b) come from


@dataclass(frozen=True)
class Sizes:
    samples: int
    idle: int
    slow_heads: int
    watched: int  # ConfigMaps the slow reader's watch starts with
    bomb_mib: int  # inflated size of one bomb
    # Rounds of (a): bombs while `samples` GETs are taken, then `samples` unabused ones.
    bomb_rounds: int


FULL = Sizes(samples=400, idle=2000, slow_heads=200, watched=2000, bomb_mib=3072, bomb_rounds=7)
QUICK = Sizes(samples=30, idle=50, slow_heads=10, watched=50, bomb_mib=64, bomb_rounds=2)


def world(sizes: Sizes) -> list[dict[str, Any]]:
    def configmap(name: str, namespace: str, size: int) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"payload": "x" * size},
        }

    return [
        *common.proxy_rbac(),
        *common.namespaces(NAMESPACES, TENANTS),
        common.viewer_binding(NAMESPACE, GROUP),
        common.viewer_binding(ABUSER_NAMESPACE, ABUSER_GROUP),
        configmap("bench", NAMESPACE, 1024),
        *(configmap(f"big-{i}", ABUSER_NAMESPACE, 8192) for i in range(sizes.watched)),
    ]


def gzip_bomb(inflated_mib: int) -> bytes:
    """Gzip of `inflated_mib` MiB of zeros (~1/1000 the size), built from one repeated segment."""
    zeros = bytes(1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    segment = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    return head + segment * (inflated_mib - 1)


@dataclass(frozen=True)
class Target:
    """Where and as whom the abuser connects (picklable: the abuser runs in its own process)."""

    host: str
    port: int
    ca_pem: bytes
    cert_file: str
    key_file: str

    @classmethod
    def of(cls, proxy: common.ProxyProcess) -> Target:
        proxy.ssl_for(ABUSER, [ABUSER_GROUP])  # writes the abuser's certificate and key
        where = proxy.workdir / "clients" / f"px-{ABUSER}"
        host, _, port = proxy.url.removeprefix("https://").rpartition(":")
        return cls(
            host,
            int(port),
            proxy.client_ca.cert_pem,
            str(where / "tls.crt"),
            str(where / "tls.key"),
        )


class Abuser:
    """Raw TLS connections of the abusing tenant."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.ctx = ssl.create_default_context(cadata=target.ca_pem.decode())
        self.ctx.load_cert_chain(target.cert_file, target.key_file)

    async def connect(
        self, source: str | None = None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(
            self.target.host,
            self.target.port,
            ssl=self.ctx,
            local_addr=(source, 0) if source is not None else None,
        )

    async def bombs(self, bomb: bytes, stop: Callable[[], bool], control: Bombing) -> None:
        """POST `bomb` again and again while `control.go` is set, until `stop()`; answered
        bombs are counted in `control.answered`; `control.idle` is set while none is sent."""
        head = (
            f"POST /api/v1/namespaces/{ABUSER_NAMESPACE}/configmaps HTTP/1.1\r\nHost: p\r\n"
            f"Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
            f"Content-Length: {len(bomb)}\r\n\r\n"
        ).encode()
        while not stop():
            if not control.go.is_set():
                control.throwing.clear()
                control.idle.set()
                await asyncio.to_thread(control.go.wait, 0.1)
                continue
            control.idle.clear()
            control.throwing.set()
            # The proxy answers 415 and closes without reading the body: a new connection each.
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                reader, writer = await self.connect()
                writer.write(head + bomb)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                if (await reader.readline()).startswith(b"HTTP/1.1 415"):
                    with control.answered.get_lock():
                        control.answered.value += 1
                writer.close()

    async def hold(self, count: int, send: bytes) -> list[asyncio.StreamWriter]:
        """`count` connections that send `send` (maybe nothing) and then wait."""
        held: list[asyncio.StreamWriter] = []
        gate = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with gate:
                _, writer = await self.connect(f"127.0.1.{1 + i % CROWD_ADDRESSES}")
                if send:
                    writer.write(send)
                held.append(writer)

        await asyncio.gather(*(one(i) for i in range(count)))
        return held

    async def slow_watch(self) -> asyncio.StreamWriter:
        reader, writer = await self.connect()
        writer.write(
            f"GET /api/v1/namespaces/{ABUSER_NAMESPACE}/configmaps?watch=1 HTTP/1.1\r\n"
            "Host: p\r\n\r\n".encode()
        )
        await reader.readline()  # the watch is open; nothing more is read
        return writer


@dataclass(frozen=True)
class Bombing:
    """The sampler's hold on the bomb thrower (shared with its process)."""

    go: Any  # multiprocessing Event: bombs are thrown while it is set
    idle: Any  # multiprocessing Event: set while no bomb is in flight
    throwing: Any  # multiprocessing Event: set while bombs are thrown
    answered: Any  # multiprocessing Value("i"): bombs answered 415 while `go` was set


async def _abuse(
    kind: str, target: Target, sizes: Sizes, ready: Any, stop: Any, control: Bombing
) -> None:
    abuser = Abuser(target)
    writers: list[asyncio.StreamWriter] = []
    if kind == "bombs":
        bomb = gzip_bomb(sizes.bomb_mib)
        ready.set()
        await abuser.bombs(bomb, stop.is_set, control)
        return
    if kind == "held":
        writers = await abuser.hold(sizes.idle, b"")
        head = b"GET /api/v1/namespaces HTTP/1.1\r\nHost: p\r\nX-"
        writers += await abuser.hold(sizes.slow_heads, head)
    elif kind == "watch":
        writers = [await abuser.slow_watch()]
    ready.set()
    await asyncio.to_thread(stop.wait)
    for writer in writers:
        writer.close()


def _abuse_process(
    kind: str, target: Target, sizes: Sizes, ready: Any, stop: Any, control: Bombing
) -> None:
    common.run(_abuse(kind, target, sizes, ready, stop, control))


@contextlib.asynccontextmanager
async def abusing(kind: str, target: Target, sizes: Sizes) -> AsyncIterator[Bombing]:
    """Abuse of `kind` from its own process (so that it never slows the sampler's loop).
    Bombs are thrown only while the `go` event yielded is set."""
    spawn = multiprocessing.get_context("spawn")
    ready, stop = spawn.Event(), spawn.Event()
    control = Bombing(spawn.Event(), spawn.Event(), spawn.Event(), spawn.Value("i", 0))
    child = spawn.Process(target=_abuse_process, args=(kind, target, sizes, ready, stop, control))
    child.start()
    try:
        if not await asyncio.to_thread(ready.wait, 300):
            raise RuntimeError(f"abuse {kind} not ready")
        yield control
    finally:
        stop.set()
        await asyncio.to_thread(child.join, 60)


async def sample(via: Callable[[], Awaitable[float]], count: int) -> list[float]:
    return [await via() for _ in range(count)]


def open_connections(proxy: common.ProxyProcess) -> float:
    url = f"{proxy.metrics_url}/metrics"
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tenant_proxy_connections_open{")
    )


async def until_closed(proxy: common.ProxyProcess) -> None:
    """Until the proxy has let go of every abusive connection (its own gauge says so)."""
    deadline = time.monotonic() + 120
    # The sampling session's own connection stays; the gauge is only readable over HTTP.
    while await asyncio.to_thread(open_connections, proxy) > 1:
        if time.monotonic() > deadline:
            raise RuntimeError("the proxy still holds abusive connections after 120 s")
        await asyncio.to_thread(time.sleep, 0.1)


PHASES = (
    ("bombs", "(a) GET while bombs are sent"),
    ("held", "(b) GET while idle and slow-head connections are held"),
    ("watch", "(c) GET while a slow reader holds a watch"),
    ("held", "(b) again: GET while the connections are held a second time"),
)


@dataclass
class BombRounds:
    """Phase (a) in rounds: the GETs of each round, abused and unabused between rounds."""

    abused: list[list[float]]
    between: list[list[float]]  # unabused samples after each round but the last
    bombs: list[int]  # bombs answered while each round was sampled
    seconds: float  # time the abused samples took, all rounds


async def bomb_rounds(
    get: Callable[[], Awaitable[float]],
    control: Bombing,
    proxy: common.ProxyProcess,
    sizes: Sizes,
    rss_during: list[int],
) -> BombRounds:
    rounds = BombRounds([], [], [], 0.0)
    for r in range(sizes.bomb_rounds):
        control.go.set()
        if not await asyncio.to_thread(control.throwing.wait, 10):
            raise RuntimeError("the bomb thrower did not start")
        answered, started = control.answered.value, time.monotonic()
        rounds.abused.append(await sample(get, sizes.samples))
        rounds.seconds += time.monotonic() - started
        rounds.bombs.append(control.answered.value - answered)
        if r == 0:
            rss_during.append(proxy.process.rss())
        control.go.clear()
        # The bomb in flight finishes (its answer counts for no round), and the proxy lets
        # go of its connection before the unabused samples.
        if not await asyncio.to_thread(control.idle.wait, 60):
            raise RuntimeError("the bomb thrower did not stop")
        await until_closed(proxy)
        if r < sizes.bomb_rounds - 1:
            rounds.between.append(await sample(get, sizes.samples))
    return rounds


async def measure(table: common.Table, proxy: common.ProxyProcess, sizes: Sizes) -> None:
    """Each phase is compared with the unabused samples taken just before and just after it
    (load from other processes on the machine drifts; this keeps it on both sides alike);
    each round of (a) with the unabused samples just before and after that round."""
    target = Target.of(proxy)
    async with common.session(proxy.ssl_for(USER, [GROUP])) as tenant:

        async def get() -> float:
            return await common.timed_get(tenant, proxy.url + PATH)

        await sample(get, 30)  # warm connection, caches, code paths
        rss_before = proxy.process.rss()
        quiet = [await sample(get, sizes.samples)]
        abused: list[list[float]] = []
        rss_during: list[int] = []
        rss_settled: list[int] = []
        bombed = BombRounds([], [], [], 0.0)
        for kind, _ in PHASES:
            common.progress(f"{kind}")
            async with abusing(kind, target, sizes) as control:
                if kind == "bombs":
                    bombed = await bomb_rounds(get, control, proxy, sizes, rss_during)
                    abused.append([x for samples in bombed.abused for x in samples])
                else:
                    rss_during.append(proxy.process.rss())
                    abused.append(await sample(get, sizes.samples))
            await until_closed(proxy)
            quiet.append(await sample(get, sizes.samples))  # also gives the trim its second
            rss_settled.append(proxy.process.rss())
        ratios: list[float] = []
        for i, (kind, title) in enumerate(PHASES):
            around = quiet[i] + quiet[i + 1]
            if kind == "bombs":
                unabused = [quiet[i], *bombed.between, quiet[i + 1]]
                rounds = [
                    common.p99(samples) / common.p99(unabused[r] + unabused[r + 1])
                    for r, samples in enumerate(bombed.abused)
                ]
                around = [x for samples in unabused for x in samples]
                table.add_latencies(f"{title}, all rounds", abused[i], around)
                ratios.append(statistics.median(rounds))
            else:
                table.add_latencies(title, abused[i], around)
                ratios.append(common.p99(abused[i]) / common.p99(around))
        worst = max(ratios)
        table.add(
            "worst abused p99 / unabused p99 ((a): median of its rounds)",
            "-",
            "-",
            f"{worst:.2f}x",
            "<= 2x",
            worst <= 2,
        )
        table.add(
            "(a) p99 / unabused p99 of each round (the unabused just before and after it)",
            " ".join(f"{x:.2f}" for x in rounds),
            "-",
            f"median {ratios[0]:.2f}x",
            "-",
            None,
        )
        bombs = sum(bombed.bombs)
        table.add(
            "(a) bombs answered 415 while sampled (each round)",
            f"{bombs} ({bombs / bombed.seconds:.1f}/s)",
            "-",
            " ".join(str(n) for n in bombed.bombs),
            "-",
            None,
        )
        for i, (_, title) in enumerate(PHASES):
            table.add(
                f"proxy RSS during / after {title.split(':')[0].split(' GET')[0]}",
                f"{common.mib(rss_during[i])} / {common.mib(rss_settled[i])}",
                common.mib(rss_before),
                f"+{common.mib(rss_during[i] - rss_before)} / "
                f"+{common.mib(rss_settled[i] - rss_before)}",
                "-",
                None,
            )
        grown = rss_settled[-1] - rss_before
        table.add(
            "proxy RSS after all the abuse vs before",
            common.mib(rss_settled[-1]),
            common.mib(rss_before),
            f"+{common.mib(grown)}",
            "<= +20 MiB",
            grown <= 20 * 1024 * 1024,
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.abuse")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    sizes = QUICK if parser.parse_args().quick else FULL
    # The held connections must stay held while sampled (default: closed after 32 s).
    os.environ["TENANT_PROXY_LIMITS__HEADER_TIMEOUT_SECONDS"] = "600"
    table = common.Table("abuse: another tenant's GET while the proxy is abused, vs unabused")
    started = time.monotonic()
    with common.workspace() as (workdir, stack):
        emulator = common.started(stack, common.start_emulator(workdir, world(sizes)))
        proxy = common.started(
            stack, common.start_proxy(workdir, emulator, common.tenant_configs(TENANTS))
        )
        proxy.wait_synced(60)
        common.run(measure(table, proxy, sizes))
    table.notes += [
        f"GET of a ConfigMap as {USER} ({GROUP}), {sizes.samples} sequential GETs over one "
        f"kept-alive connection per phase (per round of (a), {sizes.bomb_rounds} rounds); "
        f"baseline: the unabused samples just before and just after the phase (round), in the "
        f"same run.",
        f"Abuse by {ABUSER} ({ABUSER_GROUP}); bombs inflate to {sizes.bomb_mib} MiB each, sent "
        f"from one address; the held connections of (b) from {CROWD_ADDRESSES} addresses. The "
        "proxy runs with its default limits but a 600 s head clock, so that every held "
        "connection stays held while sampled (the default would close them after 32 s).",
        "RSS after a phase: once the proxy's tenant_proxy_connections_open gauge is back to the "
        "sampling session's one connection and the next unabused samples are taken.",
        f"Total run time {time.monotonic() - started:.0f}s.",
    ]
    print(table.render(), flush=True)


if __name__ == "__main__":
    main()
