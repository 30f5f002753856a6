"""Draining (what SIGTERM does): stop accepting, end watches cleanly, let in-flight requests end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from watching import WAIT, Watch, session_as

from tenant_proxy.demo import Demo

pytestmark = pytest.mark.e2e


async def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)  # polling a condition, bounded by the timeout


@pytest.mark.emulator_only  # injects latency into the API server
async def test_drain_ends_watches_cleanly_and_finishes_in_flight_requests(demo: Demo) -> None:
    proxy = demo.proxy
    assert proxy is not None
    in_flight = proxy.metrics.in_flight.labels("tenant")
    async with session_as(demo, "alice", ["tenant-a-devs"]) as session:
        filtered = Watch(await session.get("/api/v1/namespaces?watch=1"))
        passthrough = Watch(await session.get("/api/v1/namespaces/team-a-dev/configmaps?watch=1"))
        await filtered.initial(2)
        demo.emulator.set_latency(0.5)
        slow = asyncio.ensure_future(session.get("/api/v1/namespaces/team-a-dev/pods"))
        await wait_until(lambda: in_flight._value.get() >= 3)
        stopping = asyncio.ensure_future(proxy.stop())
        assert await filtered.ended()
        assert await passthrough.ended()
        response = await asyncio.wait_for(slow, WAIT)
        assert response.status == 200
        assert (await response.json())["kind"] == "PodList"
        await asyncio.wait_for(stopping, WAIT)
    demo.proxy = None  # stopped here; the fixture then stops only the emulator
