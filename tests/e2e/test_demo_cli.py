"""`tenant-proxy demo` as a user runs it: a subprocess, `ready`, then kubectl per kubeconfig."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import kubectl

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl]

SCRIPT = Path(sys.executable).parent / "tenant-proxy"


@pytest.fixture
async def demo_process(tmp_path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "demo",
        "--dir",
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        while b"ready" not in (line := await proc.stdout.readline()):
            assert line, "the demo exited before it was ready"
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def names(kubeconfig: Path, resource: str) -> set[str]:
    result = await kubectl(kubeconfig, "get", resource, "-o", "name")
    assert result.code == 0, result.err
    return result.names()


async def test_demo_serves_each_tenant_its_own(
    demo_process: asyncio.subprocess.Process, tmp_path: Path
) -> None:
    alice, bob, admin = (tmp_path / f"{u}.kubeconfig" for u in ("alice", "bob", "admin"))
    assert await names(alice, "namespaces") == {"team-a-dev", "team-a-prod"}
    assert await names(bob, "namespaces") == {"team-b-dev"}
    assert await names(alice, "nodes") == {"node-a1"}
    assert await names(bob, "nodes") == {"node-b1", "node-shared"}
    assert await names(alice, "pv") == {"pv-a-data"}
    assert await names(bob, "pv") == {"pv-b-data"}
    everything = await names(admin, "namespaces")
    assert {"team-a-dev", "team-b-dev", "team-c-dev", "kube-system"} <= everything
    assert len(await names(admin, "pv")) == 4


async def test_demo_stops_cleanly_on_sigterm(demo_process: asyncio.subprocess.Process) -> None:
    demo_process.send_signal(signal.SIGTERM)
    assert demo_process.stdout is not None
    rest = await asyncio.wait_for(demo_process.stdout.read(), 30)
    assert await asyncio.wait_for(demo_process.wait(), 30) == 0
    assert b"stopped" in rest
    assert b"Traceback" not in rest
