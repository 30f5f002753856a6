"""`tenant-proxy serve --workers 2` as an operator runs it: several processes on one port,
SIGHUP (or an edit of the config file) reloads the tenants, SIGTERM stops every worker."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from conftest import kubectl

from tenant_proxy.demo import Demo

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl, pytest.mark.emulator_only]

SCRIPT = Path(sys.executable).parent / "tenant-proxy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Demo, Path, asyncio.subprocess.Process]]:
    """The demo's emulator, with `tenant-proxy serve --workers 2` in front instead of in-process."""
    demo = Demo(tmp_path, tenant_port=free_port(), admin_port=free_port())
    upstream = await demo.start_upstream()
    doc = demo.settings(upstream).model_dump(mode="json")
    doc["observability"]["metrics"] = None
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(doc))
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "serve",
        "--config",
        str(config),
        "--workers",
        "2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    ready = 0
    async with asyncio.timeout(60):
        while ready < 2:
            line = await proc.stdout.readline()
            assert line, "serve exited before both workers were ready"
            ready += b"tenant-proxy ready" in line
    try:
        yield demo, config, proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await demo.stop_upstream()


def kubeconfig(demo: Demo, config: Path, user: str, groups: list[str]) -> Path:
    """A client-certificate kubeconfig for the served tenant listener."""
    from tenant_proxy import pki
    from tenant_proxy.kubeconfig import build_kubeconfig, write_kubeconfig

    port = yaml.safe_load(config.read_text())["listener"]["address"].rsplit(":", 1)[1]
    pair = pki.issue_client_cert(demo.client_ca, user, groups)
    doc = build_kubeconfig(
        f"https://127.0.0.1:{port}",
        demo.client_ca.cert_pem,
        user=user,
        client_cert_pem=pair.cert_pem,
        client_key_pem=pair.key_pem,
    )
    return write_kubeconfig(demo.dir / f"served-{user}.kubeconfig", doc)


async def namespaces(path: Path) -> set[str] | None:
    result = await kubectl(path, "get", "namespaces", "-o", "name")
    return result.names() if result.code == 0 else None


async def test_workers_serve_filtered_and_sighup_reloads_tenants(
    served: tuple[Demo, Path, asyncio.subprocess.Process],
) -> None:
    demo, config, proc = served
    alice = kubeconfig(demo, config, "alice", ["tenant-a-devs"])
    zed = kubeconfig(demo, config, "zed", [])
    for _ in range(4):  # several connections: whichever worker answers, the answer is the same
        assert await namespaces(alice) == {"team-a-dev", "team-a-prod"}
    assert await namespaces(zed) is None  # in no tenant: the cluster's RBAC refuses

    doc = yaml.safe_load(config.read_text())
    doc["tenancy"]["tenants"].append(
        {"name": "team-z", "members": {"users": ["zed"]}, "namespaces": ["platform"]}
    )
    config.write_text(yaml.safe_dump(doc))
    proc.send_signal(signal.SIGHUP)
    async with asyncio.timeout(20):
        seen = 0
        while seen < 4:  # both workers reloaded: four answers in a row
            seen = seen + 1 if await namespaces(zed) == {"platform"} else 0

    # A broken edit is refused: the running configuration stays.
    config.write_text("tenancy: [unclosed\n")
    proc.send_signal(signal.SIGHUP)
    for _ in range(4):
        assert await namespaces(zed) == {"platform"}

    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
