"""What aiohttp's client defaults would break, shown through the proxy: the 101st watch,
and a watch that outlives the first-byte timeout."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from watching import Watch, session_as

from tenant_proxy.demo import Demo
from tenant_proxy.server import ProxyServer

pytestmark = [pytest.mark.e2e, pytest.mark.emulator_only]


async def test_the_hundred_and_twentieth_watch_is_not_stalled(demo: Demo) -> None:
    """aiohttp's connector allows 100 connections by default: watch 101 would wait forever."""
    async with session_as(demo, "alice", ["tenant-a-devs"]) as session:
        path = "/api/v1/namespaces/team-a-dev/configmaps?watch=1"
        responses = await asyncio.wait_for(
            asyncio.gather(*(session.get(path) for _ in range(120))), 30
        )
        try:
            assert [r.status for r in responses] == [200] * 120
            async with session.get("/api/v1/namespaces/team-a-dev/configmaps") as plain:
                assert plain.status == 200
        finally:
            for r in responses:
                r.close()


async def test_a_watch_outlives_the_first_byte_timeout(tmp_path: Path) -> None:
    """Only the time to the answer's head is bounded: a watch streams on (bookmarks every
    second here, with a 0.5 s first-byte timeout)."""
    demo = Demo(tmp_path)
    upstream = await demo.start_upstream()
    settings = demo.settings(upstream)
    settings = settings.model_copy(
        update={"upstream": settings.upstream.model_copy(update={"response_timeout_seconds": 0.5})}
    )
    demo.proxy = ProxyServer(settings)
    await demo.proxy.start()
    try:
        async with session_as(demo, "alice", ["tenant-a-devs"]) as session:
            query = "watch=1&allowWatchBookmarks=true"
            async with session.get(f"/api/v1/namespaces/team-a-dev/configmaps?{query}") as r:
                watch = Watch(r)
                for _ in range(3):  # at least 2 s of streaming
                    await watch.until(lambda e: e["type"] == "BOOKMARK")
    finally:
        await demo.stop()
