"""`/metrics` under `serve --workers 2`: whichever worker a scrape lands on, it answers the
aggregate of every live worker; a worker that dies is marked dead; the shared directory lives
exactly as long as the run. An inherited PROMETHEUS_MULTIPROC_DIR changes nothing.

Each request and scrape is attributed to the worker that accepted its connection (psutil reads
the workers' sockets), so the tests know that both workers took part on both sides.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import stat
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from served import Served, free_port, serve
from watching import tls_for

pytestmark = [pytest.mark.e2e, pytest.mark.emulator_only]

REQUESTS = 10
DEADLINE = 30.0


def workers_of(served: Served) -> list[psutil.Process]:
    """The parent's children listening on the tenant port (not multiprocessing's helper)."""
    port = int(served.tenant_url.rsplit(":", 1)[1])
    workers = [
        child
        for child in psutil.Process(served.proc.pid).children()
        if any(c.laddr.port == port for c in child.net_connections(kind="tcp"))
    ]
    assert len(workers) == 2
    return workers


def worker_at(workers: list[psutil.Process], client_port: int) -> int:
    """The pid of the worker holding the other end of the connection from `client_port`."""
    owners = {
        worker.pid
        for worker in workers
        for conn in worker.net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == client_port
    }
    assert len(owners) == 1, owners
    return owners.pop()


@asynccontextmanager
async def get(
    url: str, workers: list[psutil.Process], tls: ssl.SSLContext | bool = True
) -> AsyncIterator[tuple[int, aiohttp.ClientResponse]]:
    """GET over a new connection (SO_REUSEPORT spreads connections, not requests) from a port
    known beforehand: the response, and the worker that accepted the connection."""
    port = free_port()
    connector = aiohttp.TCPConnector(ssl=tls, local_addr=("127.0.0.1", port))
    async with aiohttp.ClientSession(connector=connector) as session, session.get(url) as r:
        # Headers arrived: the worker has accepted, and holds the kept-alive connection.
        yield worker_at(workers, port), r


Samples = dict[str, float]


async def scrape(served: Served, workers: list[psutil.Process]) -> tuple[int, Samples]:
    """One scrape: which worker answered, and per sample name the sum over the tenant listener."""
    async with get(f"{served.metrics_url}/metrics", workers) as (pid, r):
        assert r.status == 200
        text = await r.text()
    sums: Samples = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("listener") == "tenant":
                sums[sample.name] += sample.value
    return pid, sums


async def scrape_families(served: Served, workers: list[psutil.Process]) -> dict[str, Any]:
    """One scrape, by metric family name."""
    async with get(f"{served.metrics_url}/metrics", workers) as (_pid, r):
        text = await r.text()
    return {family.name: family for family in text_string_to_metric_families(text)}


async def scrapes_from_both(
    served: Served, workers: list[psutil.Process], check: Callable[[Samples], bool]
) -> None:
    """Scrape until each worker has answered twice with samples passing `check`; once one has,
    every later scrape must (the values settle after the responses: no jumping back)."""
    answered: Counter[int] = Counter()
    samples: Samples = {}
    try:
        async with asyncio.timeout(DEADLINE):
            while min(answered[w.pid] for w in workers) < 2:
                pid, samples = await scrape(served, workers)
                if check(samples):
                    answered[pid] += 1
                else:
                    assert not answered, f"worker {pid} answered {samples} after {answered}"
    except TimeoutError:
        raise AssertionError(f"no settled answer from every worker: {answered} {samples}") from None


async def requests_on_each(served: Served, workers: list[psutil.Process]) -> Counter[int]:
    """At least REQUESTS tenant requests, and at least one on each worker: how many on which."""
    served_by: Counter[int] = Counter()
    ctx = tls_for(served.demo, "alice", ["tenant-a-devs"])
    async with asyncio.timeout(DEADLINE):
        while served_by.total() < REQUESTS or len(served_by) < len(workers):
            async with get(f"{served.tenant_url}/api/v1/namespaces", workers, ctx) as (pid, r):
                assert r.status == 200
                served_by[pid] += 1
    return served_by


@asynccontextmanager
async def open_watch(served: Served, workers: list[psutil.Process]) -> AsyncIterator[int]:
    """A pod watch in team-a-dev, open for the block; yields the worker serving it."""
    ctx = tls_for(served.demo, "alice", ["tenant-a-devs"])
    path = "/api/v1/namespaces/team-a-dev/pods?watch=true"
    async with get(f"{served.tenant_url}{path}", workers, ctx) as (pid, r):
        assert r.status == 200
        yield pid


def shared_dir(workers: list[psutil.Process]) -> Path:
    dirs = {worker.environ().get("PROMETHEUS_MULTIPROC_DIR") for worker in workers}
    assert len(dirs) == 1, dirs
    (directory,) = dirs
    assert directory is not None
    return Path(directory)


async def stopped(served: Served) -> int:
    served.proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(served.proc.wait(), DEADLINE)


@pytest.mark.slow
async def test_every_worker_answers_the_total_of_all_workers(tmp_path: Path) -> None:
    async with serve(tmp_path, workers=2, metrics=True) as served:
        workers = workers_of(served)
        directory = shared_dir(workers)
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700

        total = (await requests_on_each(served, workers)).total()
        await scrapes_from_both(
            served,
            workers,
            lambda s: (
                (s["tenant_proxy_requests_total"], s["tenant_proxy_request_seconds_count"])
                == (total, total)
            ),
        )

        families = await scrape_families(served, workers)
        # One build_info for the run, not one per worker; upstream durations of both summed.
        assert [s.value for s in families["tenant_proxy_build_info"].samples] == [1]
        upstream = families["tenant_proxy_upstream_request_seconds"].samples
        listed = [
            s.value
            for s in upstream
            if s.name.endswith("_count")
            and s.labels["resource"] == "namespaces"
            and s.labels["verb"] == "list"
        ]
        # Each tenant list went upstream once, and each worker's informer listed namespaces.
        assert sum(listed) >= total + len(workers)

        async with open_watch(served, workers):
            await scrapes_from_both(served, workers, lambda s: s["tenant_proxy_open_watches"] == 1)
        await scrapes_from_both(served, workers, lambda s: s["tenant_proxy_open_watches"] == 0)

        assert await stopped(served) == 0
        assert not directory.exists()


@pytest.mark.slow
async def test_a_worker_that_dies_is_marked_dead_and_its_counts_stay(tmp_path: Path) -> None:
    async with serve(tmp_path, workers=2, metrics=True) as served:
        workers = workers_of(served)
        directory = shared_dir(workers)
        served_by = await requests_on_each(served, workers)
        async with open_watch(served, workers) as watcher:
            await scrapes_from_both(served, workers, lambda s: s["tenant_proxy_open_watches"] == 1)
            os.kill(watcher, signal.SIGKILL)
        (survivor,) = [w for w in workers if w.pid != watcher]

        # Only the survivor answers now: the dead worker's open watch and in-flight request are
        # gone, its request counts are still in the totals (counters never go back).
        gauges_gone = ("tenant_proxy_open_watches", "tenant_proxy_requests_in_flight")
        await scrapes_from_both(
            served,
            [survivor],
            lambda s: (
                [s[name] for name in ("tenant_proxy_requests_total", *gauges_gone)]
                == [served_by.total(), 0, 0]
            ),
        )
        logs = [json.loads(line) for line in served.log.read_text().splitlines()]
        exits = [(e["pid"], e["exit_code"]) for e in logs if e["msg"] == "worker exited"]
        assert exits == [(watcher, -signal.SIGKILL)]

        assert await stopped(served) == 1  # a worker died: the run failed
        assert not directory.exists()


async def test_one_worker_ignores_an_inherited_multiprocess_directory(tmp_path: Path) -> None:
    inherited = tmp_path / "inherited"
    inherited.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(inherited)}
    async with serve(tmp_path / "run", workers=1, metrics=True, env=env) as served:
        (worker,) = [psutil.Process(served.proc.pid)]
        total = (await requests_on_each(served, [worker])).total()
        _, samples = await scrape(served, [worker])
        assert samples["tenant_proxy_requests_total"] == total
        assert list(inherited.iterdir()) == []
        assert await stopped(served) == 0
    assert "ignoring PROMETHEUS_MULTIPROC_DIR" in served.log.read_text()
