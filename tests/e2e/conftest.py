"""End-to-end fixtures: the demo environment (emulator + proxy), driven by real kubectl.

With TENANT_PROXY_E2E_KUBECONFIG naming an admin kubeconfig of a real cluster, the same tests run
with the proxy in front of that cluster instead (tests marked `emulator_only`, which inject faults
or read the emulator's internals, are skipped there).
kubectl runs as a subprocess awaited with asyncio, so the in-process servers keep serving.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cluster import Cluster
from e2e_kubectl import REAL_CLUSTER
from realcluster import RealClusterDemo, remove_shared_worlds

from tenant_proxy.demo import Demo


def pytest_sessionfinish(session: pytest.Session) -> None:
    # The real cluster's world is made once per session (realcluster.py), and removed here,
    # however the tests ended.
    remove_shared_worlds()


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    # `-n auto` (pyproject): against a real cluster one process only. Each xdist worker would make
    # the shared world under the same names, and take the other's objects for an earlier run's
    # leftovers and remove them.
    return 0 if REAL_CLUSTER else None


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
