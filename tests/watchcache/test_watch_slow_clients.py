"""A chunked watch served from the cache writes straight to its connection: a client that stops
reading is cut with the cacher's 429 ERROR once its backlog stays put, and nothing is queued
for it beyond that (real TLS sockets, the demo's proxy in front of its emulator)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import orjson

from tenant_proxy import pki
from tenant_proxy.config import Settings
from tenant_proxy.demo import Demo
from tenant_proxy.emulator.testing import client_ssl

WAIT = 30.0
EVENTS = 24
ALICE = ("alice", ["tenant-a-devs"])


class TinyBacklogDemo(Demo):
    """The demo with room for two lines past a connection's high-water mark, and 0.2 s."""

    def settings(self, upstream: Path) -> Settings:
        settings = super().settings(upstream)
        limits = settings.limits.model_copy(
            update={"watch_buffer_events": 2, "watch_slow_client_seconds": 0.2}
        )
        return settings.model_copy(update={"limits": limits})


def cut_count(demo: Demo) -> float:
    assert demo.proxy is not None
    value = demo.proxy.metrics.registry.get_sample_value(
        "tenant_proxy_watches_cut_total", {"reason": "too_slow"}
    )
    return value or 0.0


@asynccontextmanager
async def alice_watching(
    tmp_path: Path, query: str
) -> AsyncIterator[tuple[Demo, aiohttp.ClientResponse]]:
    """A started TinyBacklogDemo and alice's chunked namespace watch (`query` added)."""
    demo = TinyBacklogDemo(tmp_path)
    await demo.start()
    try:
        assert demo.proxy is not None
        ctx = client_ssl(demo.client_ca.cert_pem, pki.issue_client_cert(demo.client_ca, *ALICE))
        url = demo.proxy.tenant_url + "/api/v1/namespaces?watch=1" + query
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session,
            session.get(url) as resp,
        ):
            yield demo, resp
    finally:
        await demo.stop()


async def until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not predicate():
            await asyncio.sleep(0.02)  # polls a metric: nothing to wait on


async def test_a_chunked_watch_that_is_not_read_is_cut_with_429_not_buffered(
    tmp_path: Path,
) -> None:
    async with alice_watching(tmp_path, "") as (demo, resp):
        assert resp.status == 200
        assert resp.headers["Transfer-Encoding"] == "chunked"
        first = orjson.loads(await resp.content.readline())
        assert first["type"] == "ADDED"
        assert resp.connection is not None
        assert resp.connection.transport is not None
        # Far more than socket buffers hold, while the client reads nothing.
        resp.connection.transport.pause_reading()
        big = "x" * (1024 * 1024)
        for i in range(EVENTS):
            await demo.emulator.patch(
                "v1",
                "Namespace",
                "team-a-dev",
                {"metadata": {"annotations": {"big": f"{i}{big}"}}},
            )
        await until(lambda: cut_count(demo) == 1)
        resp.connection.transport.resume_reading()
        async with asyncio.timeout(WAIT):
            rest = await resp.content.read()  # events of 1 MiB: longer than a line's limit
    events = [orjson.loads(line) for line in rest.splitlines() if line.strip()]
    modified = [e for e in events if e["type"] == "MODIFIED"]
    assert events[-1]["type"] == "ERROR"
    assert (events[-1]["object"]["code"], events[-1]["object"]["reason"]) == (
        429,
        "TooManyRequests",
    )
    assert 0 < len(modified) < EVENTS  # some went, the rest were never queued


async def test_a_chunked_watch_that_reads_gets_every_event_and_is_not_cut(
    tmp_path: Path,
) -> None:
    seen: list[str] = []
    async with alice_watching(tmp_path, "&timeoutSeconds=5") as (demo, resp):
        await resp.content.readline()
        for i in range(8):
            await demo.emulator.patch(
                "v1", "Namespace", "team-a-dev", {"metadata": {"annotations": {"n": str(i)}}}
            )
        async with asyncio.timeout(WAIT):
            async for line in resp.content:
                event = orjson.loads(line)
                seen.append(event["type"])
                annotations = event["object"]["metadata"].get("annotations") or {}
                if annotations.get("n") == "7":
                    break
        assert "ERROR" not in seen
        assert seen.count("MODIFIED") >= 8
        assert cut_count(demo) == 0
