"""The real-cluster mode's own machinery (realcluster.py, cluster.py), against the emulator
posing as a cluster (only its admin kubeconfig is used, as with TENANT_PROXY_E2E_KUBECONFIG).

What a real cluster's controllers do later the emulator does at once, except where an object
waits on a finalizer: those cases are made here with finalizers of the tests' own, so the waits
are seen to wait. The emulator's internals are read only to compare the whole cluster before and
after (a real cluster would need every kind listed).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster import CRD, Cluster, until
from e2e_kubectl import kubectl
from kubernetes_asyncio.client.exceptions import ApiException
from realcluster import DEPLOY, RealClusterDemo, RealWorld

from tenant_proxy.emulator.app import Emulator

pytestmark = [pytest.mark.e2e, pytest.mark.emulator_only]

Snapshot = dict[tuple[str, str, str, str], str]
HOLD = "example.com/hold"


def deployed_tenant_proxy() -> list[dict[str, Any]]:
    """What a cluster already running tenant-proxy holds: its ClusterRole, binding, Tenant CRD
    and a Tenant of its own."""
    docs = [
        yaml.safe_load((DEPLOY / name).read_text())
        for name in ("clusterrole.yaml", "clusterrolebinding.yaml", "crd-tenant.yaml")
    ]
    docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tenant-proxy"}})
    tenant = {
        "apiVersion": "tenancy.tenant-proxy.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": "production"},
        "spec": {"members": {"groups": ["prod-team"]}},
    }
    return [*docs, tenant]


def snapshot(emulator: Emulator) -> Snapshot:
    """Every stored object and its resourceVersion."""
    kinds = {(rt.group, rt.plural) for rt in emulator.registry.all()}
    return {
        (group, plural, o["metadata"].get("namespace", ""), o["metadata"]["name"]): o["metadata"][
            "resourceVersion"
        ]
        for group, plural in kinds
        for o in emulator.store.list_objects(group, plural)
    }


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator(seed_objects=deployed_tenant_proxy(), metrics_server=True) as em:
        yield em


@pytest.fixture
def admin(emulator: Emulator, tmp_path: Path) -> Path:
    return emulator.write_kubeconfig(tmp_path / "admin.kubeconfig", "admin", ["system:masters"])


@pytest.fixture
async def cluster(admin: Path) -> AsyncIterator[Cluster]:
    connected = await Cluster.connect(admin)
    try:
        yield connected
    finally:
        await connected.close()


async def test_the_world_runs_under_names_of_its_own_and_leaves_the_cluster_as_it_was(
    emulator: Emulator, admin: Path, tmp_path: Path
) -> None:
    before = snapshot(emulator)
    world = RealWorld(admin)
    demo = RealClusterDemo(tmp_path / "demo", admin, world)
    await demo.start()
    try:
        alice = demo.dir / "alice.kubeconfig"
        listed = await kubectl(alice, "get", "namespaces", "-o", "name")
        assert listed.names() == {"team-a-dev", "team-a-prod"}
        carol = await kubectl(demo.dir / "carol.kubeconfig", "get", "namespaces", "-o", "name")
        assert carol.names() == {"team-c-dev"}  # team-c: a Tenant object in the adopted CRD
        during = snapshot(emulator)
    finally:
        await demo.stop()
        await world.remove()
    # The deployed proxy's role, binding, CRD and Tenant were never written.
    assert {k: during[k] for k in before} == before
    assert world.run.startswith("tp-e2e-")
    # The proxy's roles and bindings (cluster-wide, and for node leases) are the run's own.
    proxy_rbac = {
        name
        for group, _, namespace, name in set(during) - set(before)
        if group == "rbac.authorization.k8s.io" and namespace in ("", "kube-node-lease")
    }
    suffixes = {"", "-capsule", "-rolebinding-namespaces", "-node-leases"}
    assert proxy_rbac == {f"{world.run}-tenant-proxy{s}" for s in suffixes}
    assert snapshot(emulator) == before


async def test_an_object_in_the_way_is_refused_and_nothing_is_made(
    emulator: Emulator, admin: Path, cluster: Cluster
) -> None:
    await cluster.create(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b-dev"}}
    )
    before = snapshot(emulator)
    world = RealWorld(admin)
    with pytest.raises(
        RuntimeError, match="Namespace team-b-dev, not made by the end-to-end suite"
    ):
        await world.ensure()
    assert snapshot(emulator) == before


async def test_a_failure_midway_removes_what_was_made_and_is_not_retried(
    emulator: Emulator, admin: Path
) -> None:
    before = snapshot(emulator)
    good = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tp-made-first"}}
    bad = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "Not_A_Name"}}
    world = RealWorld(admin, world=[good, bad])
    with pytest.raises(ApiException) as refused:
        await world.ensure()
    assert refused.value.status == 422
    assert snapshot(emulator) == before  # the namespace and the proxy's identity are gone
    with pytest.raises(RuntimeError, match="could not be made"):
        await world.ensure()


async def test_an_earlier_runs_leftovers_are_removed_first(
    emulator: Emulator, admin: Path, cluster: Cluster
) -> None:
    before = snapshot(emulator)
    crashed = RealWorld(admin)
    await crashed.ensure()  # and never removed, as when a run is killed
    world = RealWorld(admin)
    await world.ensure()
    assert await cluster.get("v1", "Namespace", crashed.run) is None
    assert await cluster.get("v1", "Namespace", world.run) is not None
    namespace = await cluster.get("v1", "Namespace", "team-a-dev")
    assert namespace is not None
    assert namespace["metadata"]["annotations"]["e2e.tenant-proxy.io/run"] == world.run
    await world.remove()
    assert snapshot(emulator) == before


async def test_removal_waits_while_a_namespace_is_terminating(
    admin: Path, cluster: Cluster
) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tp-held"}}
    world = RealWorld(admin, world=[namespace])
    await world.ensure()
    # Something in the namespace that its controller must wait for (as a real cluster's
    # namespace controller waits for every object's finalizers).
    held = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "held", "namespace": "tp-held", "finalizers": [HOLD]},
    }
    await cluster.create(held)
    removal = asyncio.create_task(world.remove())

    async def terminating() -> bool | None:
        found = await cluster.get("v1", "Namespace", "tp-held")
        return True if found and found["metadata"].get("deletionTimestamp") else None

    await until(terminating, "tp-held to be Terminating", 30)
    assert not removal.done()
    await cluster.patch("v1", "ConfigMap", "held", {"metadata": {"finalizers": None}}, "tp-held")
    await asyncio.wait_for(removal, 30)
    assert await cluster.get("v1", "Namespace", "tp-held") is None


async def test_waiting_for_a_namespace_gives_up_with_its_name(cluster: Cluster) -> None:
    await cluster.create(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tp-stuck"}}
    )
    held = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "held", "namespace": "tp-stuck", "finalizers": [HOLD]},
    }
    await cluster.create(held)
    with pytest.raises(TimeoutError, match="Namespace tp-stuck to be gone"):
        await cluster.purge("v1", "Namespace", "tp-stuck", within=0.5)
    await cluster.patch("v1", "ConfigMap", "held", {"metadata": {"finalizers": None}}, "tp-stuck")
    await cluster.wait_gone("v1", "Namespace", "tp-stuck", within=30)


def widget_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }


async def set_established(emulator: Emulator, name: str, status: str) -> None:
    """What kube-apiserver's establishing controller does (here on the test's command)."""
    rt = emulator.registry.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    assert rt is not None
    crd = emulator.get(*CRD, name)
    assert crd is not None
    conditions = [
        {**c, "status": status} if c["type"] == "Established" else c
        for c in crd["status"]["conditions"]
    ]
    body = json.dumps({"status": {"conditions": conditions}}).encode()
    emulator.cluster.patch(rt, "", name, "application/merge-patch+json", body, "status")


class Observed(Cluster):
    """The cluster client, telling the test each time it read a CRD that is not Established."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.saw_unestablished = asyncio.Event()

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str = ""
    ) -> dict[str, Any] | None:
        found = await super().get(api_version, kind, name, namespace)
        conditions = ((found or {}).get("status") or {}).get("conditions") or []
        if (api_version, kind) == CRD and {"type": "Established", "status": "False"} in [
            {"type": c["type"], "status": c["status"]} for c in conditions
        ]:
            self.saw_unestablished.set()
        return found


async def test_a_crd_is_waited_for_until_established_then_used(
    emulator: Emulator, admin: Path
) -> None:
    await emulator.create(widget_crd())
    await set_established(emulator, "widgets.example.com", "False")
    cluster = await Observed.connect(admin)
    assert isinstance(cluster, Observed)
    try:
        waiting = asyncio.create_task(cluster.wait_crd_served("widgets.example.com", within=30))
        await asyncio.wait_for(cluster.saw_unestablished.wait(), 30)
        assert not waiting.done()
        await set_established(emulator, "widgets.example.com", "True")
        await asyncio.wait_for(waiting, 30)
        widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
        await cluster.create(widget)  # found by discovery at once
        assert await cluster.get("example.com/v1", "Widget", "w") is not None
    finally:
        await cluster.close()


async def test_waiting_for_a_crd_that_never_establishes_says_so(
    emulator: Emulator, cluster: Cluster
) -> None:
    await emulator.create(widget_crd())
    await set_established(emulator, "widgets.example.com", "False")
    with pytest.raises(TimeoutError, match=r"CRD widgets\.example\.com to be Established"):
        await cluster.wait_crd_served("widgets.example.com", within=0.5)


async def test_after_each_test_the_world_is_put_back(admin: Path, cluster: Cluster) -> None:
    world = RealWorld(admin)
    await world.ensure()
    try:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "left", "namespace": "team-a-dev"},
            "spec": {"nodeName": "node-a1", "containers": [{"name": "c", "image": "busybox"}]},
        }
        await cluster.create(pod)
        cluster.created.clear()  # as if made through the proxy: no fixture knows it
        label = {"metadata": {"labels": {"tenant-proxy.io/tenant": "team-b"}}}
        await cluster.patch("v1", "Namespace", "team-a-prod", label)
        claim = {"spec": {"claimRef": {"name": "x", "namespace": "team-a-prod"}}}
        await cluster.patch("v1", "PersistentVolume", "pv-unbound", claim)

        await world.restore(cluster, cluster.patched)
        await world.reset()

        assert await cluster.get("v1", "Pod", "left", "team-a-dev") is None
        prod = await cluster.get("v1", "Namespace", "team-a-prod")
        assert prod is not None
        assert prod["metadata"]["labels"]["tenant-proxy.io/tenant"] == "team-a"
        pv = await cluster.get("v1", "PersistentVolume", "pv-unbound")
        assert pv is not None
        assert "claimRef" not in pv["spec"] or pv["spec"]["claimRef"] is None
    finally:
        await world.remove()
