"""`tenant-proxy serve --workers 2` as an operator runs it: several processes on one port,
SIGHUP (or an edit of the config file) reloads the tenants, SIGTERM stops every worker."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from conftest import kubectl
from served import serve

from tenant_proxy.demo import Demo

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl, pytest.mark.emulator_only]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Demo, Path, asyncio.subprocess.Process]]:
    async with serve(tmp_path, workers=2, metrics=False) as running:
        yield running.demo, running.config, running.proc


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
