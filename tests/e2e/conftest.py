"""End-to-end fixtures: the demo environment (emulator + proxy), driven by real kubectl.

With TENANT_PROXY_E2E_KUBECONFIG naming an admin kubeconfig of a real cluster, the same tests run
with the proxy in front of that cluster instead (tests marked `emulator_only`, which inject faults
or read the emulator's internals, are skipped there).
kubectl runs as a subprocess awaited with asyncio, so the in-process servers keep serving.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cluster import Cluster
from realcluster import RealClusterDemo, remove_shared_worlds

from tenant_proxy.demo import Demo
from tenant_proxy.emulator.testing import kubectl_binary


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.out.splitlines() if line.strip()]

    def names(self) -> set[str]:
        """`-o name` output without the resource prefix."""
        return {line.rsplit("/", 1)[-1] for line in self.lines}


async def kubectl(
    kubeconfig: Path, *args: str, stdin: str | None = None, timeout: float = 60
) -> Result:
    env = {**os.environ, "HOME": str(kubeconfig.parent)}
    proc = await asyncio.create_subprocess_exec(
        kubectl_binary(),
        "--kubeconfig",
        str(kubeconfig),
        "--cache-dir",
        str(kubeconfig.parent / f".kube-cache-{kubeconfig.stem}"),
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(
        proc.communicate(stdin.encode() if stdin is not None else None), timeout
    )
    return Result(proc.returncode or 0, out.decode(), err.decode())


def pod_on_node(name: str, namespace: str, node: str) -> str:
    """A pod bound to `node` (as the scheduler would bind it), for `kubectl create -f -`."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        }
    )


REAL_CLUSTER = os.environ.get("TENANT_PROXY_E2E_KUBECONFIG")


def pytest_sessionfinish(session: pytest.Session) -> None:
    # The real cluster's world is made once per session (realcluster.py), and removed here,
    # however the tests ended.
    remove_shared_worlds()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not REAL_CLUSTER:
        return
    skip = pytest.mark.skip(reason="needs the emulator (fault injection or its internals)")
    for item in items:
        if item.get_closest_marker("emulator_only"):
            item.add_marker(skip)


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    env = RealClusterDemo(tmp_path, Path(REAL_CLUSTER)) if REAL_CLUSTER else Demo(tmp_path)
    await env.start()
    try:
        yield env
    finally:
        await env.stop()


@pytest.fixture
async def cluster(demo: Demo) -> AsyncIterator[Cluster]:
    """The cluster behind the proxy, as its admin (not through the proxy)."""
    if REAL_CLUSTER:
        kubeconfig = Path(REAL_CLUSTER)
    else:
        kubeconfig = demo.emulator.write_kubeconfig(
            demo.dir / "cluster-admin.kubeconfig", "cluster-admin", ("system:masters",)
        )
    connected = await Cluster.connect(kubeconfig)
    try:
        yield connected
    finally:
        try:
            await connected.remove_created()
            if isinstance(demo, RealClusterDemo):
                await demo.world.restore(connected, connected.patched)
        finally:
            await connected.close()


@pytest.fixture
def alice(demo: Demo) -> Path:
    return demo.dir / "alice.kubeconfig"


@pytest.fixture
def bob(demo: Demo) -> Path:
    return demo.dir / "bob.kubeconfig"


@pytest.fixture
def carol(demo: Demo) -> Path:
    return demo.dir / "carol.kubeconfig"


@pytest.fixture
def admin(demo: Demo) -> Path:
    return demo.dir / "admin.kubeconfig"
