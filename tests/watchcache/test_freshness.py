"""The current resourceVersion a consistent read must reach, read from the API server (the
emulator, over a real socket): readers that asked together share one read, and no reader gets
an answer read before it asked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tenant_proxy import status
from tenant_proxy.demo import demo_world
from tenant_proxy.emulator.app import Emulator
from tenant_proxy.settings_file import parse_settings
from tenant_proxy.upstream import Upstream
from tenant_proxy.watchcache.freshness import CurrentVersions

PATH = "/api/v1/persistentvolumes"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[Emulator, Upstream]]:
    emulator = Emulator(seed_objects=demo_world())
    await emulator.start()
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig", "tenant-proxy", ())
    settings = parse_settings(
        {
            "tls": {"cert_file": "unused.crt", "key_file": "unused.key"},
            "upstream": {"kubeconfig": str(kubeconfig)},
        },
        environ={},
    )
    upstream = Upstream(settings.upstream)
    try:
        yield emulator, upstream
    finally:
        await upstream.close()
        await emulator.stop()


def probes(emulator: Emulator) -> int:
    return sum(1 for r in emulator.received if r.path == f"{PATH}?limit=1")


async def until(condition: object) -> None:
    async with asyncio.timeout(10):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.005)  # the emulator records requests; nothing signals them


def namespace(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


async def test_readers_that_ask_while_a_read_is_on_its_way_share_the_next_one(
    api: tuple[Emulator, Upstream],
) -> None:
    emulator, upstream = api
    versions = CurrentVersions(upstream)
    emulator.set_latency(0.3)
    first = asyncio.ensure_future(versions.current(PATH))
    await until(lambda: probes(emulator) == 1)
    # A write the first read may not have seen (it was sent before): later readers must.
    written = int(
        (await emulator.create(namespace("written-after")))["metadata"]["resourceVersion"]
    )
    later = [asyncio.ensure_future(versions.current(PATH)) for _ in range(10)]
    answers = await asyncio.gather(first, *later)

    assert all(isinstance(a, int) for a in answers)
    assert all(a is not None and a >= written for a in answers[1:])
    assert probes(emulator) == versions.reads == 2


async def test_a_refusal_of_the_read_is_every_waiting_readers_answer(
    api: tuple[Emulator, Upstream],
) -> None:
    emulator, upstream = api
    versions = CurrentVersions(upstream)
    emulator.fail_next(1, 429)
    results = await asyncio.gather(
        *(versions.current(PATH) for _ in range(3)), return_exceptions=True
    )
    assert [getattr(r, "code", None) for r in results] == [429, 429, 429]
    assert all(isinstance(r, status.ApiError) for r in results)
    assert versions.reads == 1
    assert isinstance(await versions.current(PATH), int)  # the next read is a new one
