"""Readiness says why the proxy cannot serve, and filtered reads fail fast with that reason.

The API server refusing the proxy's own reads (its ClusterRole lacks persistentvolumes) is the
fault: before the first sync, `serve` does not print `ready` and `/readyz` is 503 until the right
is granted; after it, the same refusal makes `/readyz` 503 again (`?verbose` names it) and a
tenant's filtered list a 503 Status naming it, without waiting for the sync timeout.
"""

from __future__ import annotations

import asyncio
import copy
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from e2e_kubectl import kubectl
from served import SCRIPT, free_port

from tenant_proxy.demo import Demo
from tenant_proxy.emulator.app import Emulator

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl, pytest.mark.emulator_only]

RBAC = "rbac.authorization.k8s.io/v1"
PV_REFUSAL = "the proxy may not list persistentvolumes"


def without_persistentvolumes(role: dict[str, Any]) -> dict[str, Any]:
    stripped = copy.deepcopy(role)
    for rule in stripped["rules"]:
        rule["resources"] = [r for r in rule["resources"] if r != "persistentvolumes"]
    stripped["rules"] = [r for r in stripped["rules"] if r["resources"]]
    return stripped


class Rights:
    """The proxy's ClusterRole in the emulator: take persistentvolumes away, give it back."""

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator
        role = emulator.get(RBAC, "ClusterRole", "tenant-proxy")
        assert role is not None
        self.granted = copy.deepcopy(role)

    async def revoke(self) -> None:
        await self._emulator.apply(without_persistentvolumes(self.granted))

    async def restore(self) -> None:
        await self._emulator.apply(self.granted)


async def readyz(metrics_url: str, verbose: bool = False) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{metrics_url}/readyz{'?verbose' if verbose else ''}") as resp,
    ):
        return resp.status, await resp.text()


async def until_readyz(metrics_url: str, status: int) -> str:
    """/readyz is the proxy's readiness signal to the outside: wait for it to say `status`."""
    async with asyncio.timeout(60):
        while True:
            code, text = await readyz(metrics_url, verbose=True)
            if code == status:
                return text
            await asyncio.sleep(0.05)  # polling the probe, as a kubelet does


async def test_lost_read_access_fails_filtered_reads_fast_and_readiness_names_it(
    demo: Demo,
) -> None:
    assert demo.proxy is not None
    metrics, alice = demo.proxy.metrics_url, demo.dir / "alice.kubeconfig"
    assert await readyz(metrics) == (200, "ok")
    rights = Rights(demo.emulator)
    await rights.revoke()
    demo.emulator.cut_watches()  # the informer watches again, and is refused

    text = await until_readyz(metrics, 503)
    assert "[-]upstream-access failed: the proxy may not watch persistentvolumes" in text
    assert 'cannot watch resource \\"persistentvolumes\\"' in text or "forbidden" in text
    assert "[+]informer-sync ok" in text
    assert text.endswith("readyz check failed\n")
    code, withheld = await readyz(metrics)
    assert code == 503
    assert "[-]upstream-access failed: reason withheld" in withheld

    # Well inside the 10 s sync timeout: a proxy that waited would exceed --request-timeout.
    result = await kubectl(alice, "--request-timeout=5s", "get", "persistentvolumes")
    assert result.code != 0
    assert "ServiceUnavailable" in result.err
    assert "the proxy may not watch persistentvolumes" in result.err
    # Reads that rely on other resources are still served.
    assert (await kubectl(alice, "get", "namespaces", "-o", "name")).names() == {
        "team-a-dev",
        "team-a-prod",
    }

    await rights.restore()
    await until_readyz(metrics, 200)
    result = await kubectl(alice, "get", "persistentvolumes", "-o", "name")
    assert result.names() == {"pv-a-data"}, result.err


@pytest.fixture
async def refused_from_the_start(tmp_path: Path) -> AsyncIterator[tuple[Demo, Rights, Path]]:
    demo = Demo(tmp_path)
    upstream = await demo.start_upstream()
    rights = Rights(demo.emulator)
    await rights.revoke()
    try:
        yield demo, rights, upstream
    finally:
        await demo.stop_upstream()


async def test_ready_is_printed_only_once_the_informers_have_listed(
    refused_from_the_start: tuple[Demo, Rights, Path], tmp_path: Path
) -> None:
    demo, rights, upstream = refused_from_the_start
    doc = demo.settings(upstream).model_dump(mode="json")
    metrics_port = free_port()
    doc["listener"]["address"] = f"127.0.0.1:{free_port()}"
    doc["admin"]["listener"]["address"] = f"127.0.0.1:{free_port()}"
    doc["observability"]["metrics"] = {"address": f"127.0.0.1:{metrics_port}"}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(doc))
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    metrics = f"http://127.0.0.1:{metrics_port}"
    try:
        seen = b""
        async with asyncio.timeout(60):
            while b"not ready" not in (line := await proc.stderr.readline()):
                seen += line
                assert line, f"serve exited: {seen.decode()}"
        assert b"persistentvolumes" in line
        code, text = await readyz(metrics, verbose=True)
        assert code == 503
        assert f"[-]upstream-access failed: {PV_REFUSAL}" in text
        assert "[-]informer-sync failed" in text

        await rights.restore()
        async with asyncio.timeout(60):
            ready = await proc.stdout.readline()
        assert ready.startswith(b"tenant-proxy ready: tenant https://127.0.0.1:")
        assert await readyz(metrics) == (200, "ok")
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            rest = await proc.stdout.read()
            assert await proc.wait() == 0
        assert b"ready" not in rest  # printed once
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
