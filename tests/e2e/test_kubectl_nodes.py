"""`kubectl top node` and `kubectl describe node` as a tenant: its own nodes' metrics and Leases,
read through the proxy, and nothing of anyone else's.

The figures come from the emulator's metrics-server (a quarter of each node's capacity), so the
metrics tests need the emulator; the Lease tests write the Lease as a kubelet would when the
cluster has none for the demo's (kubelet-less) nodes, and run on a real cluster too.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from cluster import Cluster
from e2e_kubectl import kubectl, pod_on_node
from kubernetes_asyncio.client.exceptions import ApiException

from tenant_proxy.demo import Demo

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl]

FIGURES = {
    "node-a1": ["1000m", "25%", "2048Mi", "25%"],
    "node-b1": ["2000m", "25%", "4096Mi", "25%"],
    "node-shared": ["500m", "25%", "1024Mi", "25%"],
}


def rows(out: str) -> dict[str, list[str]]:
    """`kubectl top node --no-headers` as {node: [cpu, cpu%, memory, memory%]}."""
    return {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}


# --- kubectl top node -----------------------------------------------------------------------------


@pytest.mark.emulator_only
@pytest.mark.parametrize(
    ("who", "expected"),
    [("alice", {"node-a1"}), ("bob", {"node-b1", "node-shared"}), ("carol", {"node-shared"})],
)
async def test_top_node_shows_exactly_the_tenants_nodes_with_their_figures(
    alice: Path, who: str, expected: set[str]
) -> None:
    result = await kubectl(alice.parent / f"{who}.kubeconfig", "top", "node", "--no-headers")
    assert result.code == 0, result.err
    assert rows(result.out) == {name: FIGURES[name] for name in expected}


@pytest.mark.emulator_only
async def test_admin_sees_every_nodes_metrics(admin: Path) -> None:
    result = await kubectl(admin, "top", "node", "--no-headers")
    assert result.code == 0, result.err
    assert rows(result.out) == FIGURES


@pytest.mark.emulator_only
async def test_top_of_own_node_by_name(alice: Path) -> None:
    result = await kubectl(alice, "top", "node", "node-a1", "--no-headers")
    assert result.code == 0, result.err
    assert rows(result.out) == {"node-a1": FIGURES["node-a1"]}


@pytest.mark.emulator_only
@pytest.mark.parametrize("node", ["node-b1", "node-shared", "no-such-node"])
async def test_top_of_a_node_not_ones_own_is_the_metrics_apis_not_found(
    alice: Path, node: str
) -> None:
    # The same words for another tenant's node as for one that does not exist.
    result = await kubectl(alice, "top", "node", node)
    assert result.code == 1
    assert result.err.strip() == f'Error from server (NotFound): node "{node}" not found'


@pytest.mark.emulator_only
async def test_node_metrics_list_as_a_table_and_json(alice: Path) -> None:
    table = await kubectl(alice, "get", "nodes.metrics.k8s.io", "--no-headers")
    assert table.code == 0, table.err
    assert [line.split() for line in table.out.splitlines()] == [["node-a1", "1", "2Gi", "15s"]]
    raw = await kubectl(alice, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes")
    assert raw.code == 0, raw.err
    listed = json.loads(raw.out)
    assert listed["kind"] == "NodeMetricsList"
    assert [(i["metadata"]["name"], i["usage"]) for i in listed["items"]] == [
        ("node-a1", {"cpu": "1", "memory": "2Gi"})
    ]


@pytest.mark.emulator_only
async def test_node_metrics_cannot_be_watched(alice: Path) -> None:
    result = await kubectl(alice, "get", "nodes.metrics.k8s.io", "--watch", "--no-headers")
    assert result.code == 1
    assert result.out.split() == ["node-a1", "1", "2Gi", "15s"]
    assert result.err.strip() == (
        "Error from server (MethodNotAllowed): "
        'watch is not supported on resources of kind "nodes.metrics.k8s.io"'
    )


@pytest.mark.emulator_only
async def test_top_pod_all_namespaces_is_the_union_of_own_namespaces(
    admin: Path, alice: Path
) -> None:
    # pods.metrics.k8s.io is namespaced: RBAC decides per namespace, -A fans out over hers.
    for name, namespace in (("a", "team-a-dev"), ("b", "team-a-prod"), ("x", "team-b-dev")):
        created = await kubectl(
            admin, "create", "-f", "-", stdin=pod_on_node(name, namespace, "node-a1")
        )
        assert created.code == 0, created.err
    result = await kubectl(alice, "top", "pod", "-A", "--no-headers")
    assert result.code == 0, result.err
    assert sorted(line.split()[:2] for line in result.out.splitlines()) == [
        ["team-a-dev", "a"],
        ["team-a-prod", "b"],
    ]


@pytest.mark.emulator_only
@pytest.mark.parametrize(
    ("args", "answer"),
    [
        (("list", "nodes.metrics.k8s.io"), "yes"),
        (("get", "nodes.metrics.k8s.io/node-a1"), "yes"),
        (("delete", "nodes.metrics.k8s.io"), "no"),
        (("list", "pods.metrics.k8s.io", "-n", "team-a-dev"), "yes"),
        (("list", "pods.metrics.k8s.io", "-n", "team-b-dev"), "no"),
    ],
)
async def test_can_i_says_yes_for_the_metrics_served(
    alice: Path, args: tuple[str, ...], answer: str
) -> None:
    result = await kubectl(alice, "auth", "can-i", *args)
    assert result.out.strip() == answer, result.err


# --- kubectl describe node: the node's Lease ------------------------------------------------------


async def kubelet_lease(cluster: Cluster, node: str) -> None:
    """The Lease a node's kubelet keeps in kube-node-lease (written here if the cluster has no
    kubelet for the demo's nodes; the emulator's kubelets wrote theirs)."""
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease"},
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": 40,
            "renewTime": "2026-01-01T00:00:00.000000Z",
        },
    }
    try:
        await cluster.create(lease)
    except ApiException as exc:
        if exc.status != 409:
            raise


async def test_describe_own_node_shows_its_lease_and_own_pods(
    cluster: Cluster, admin: Path, alice: Path
) -> None:
    await kubelet_lease(cluster, "node-a1")
    for name, namespace in (("mine-on-a1", "team-a-dev"), ("theirs-on-a1", "team-b-dev")):
        created = await kubectl(
            admin, "create", "-f", "-", stdin=pod_on_node(name, namespace, "node-a1")
        )
        assert created.code == 0, created.err
    result = await kubectl(alice, "describe", "node", "node-a1")
    assert result.code == 0, result.err
    lease = re.search(
        r"^Lease:\n  HolderIdentity:  node-a1\n  AcquireTime: +<unset>\n  RenewTime: +(.+)$",
        result.out,
        re.MULTILINE,
    )
    assert lease is not None, result.out
    assert lease.group(1).strip() not in ("", "<unset>")
    assert "mine-on-a1" in result.out
    assert "theirs-on-a1" not in result.out


async def test_describe_another_tenants_node_is_not_found(alice: Path) -> None:
    result = await kubectl(alice, "describe", "node", "node-b1")
    assert result.code == 1
    assert result.err.strip() == 'Error from server (NotFound): nodes "node-b1" not found'


async def test_own_nodes_lease_is_read_for_the_tenant(cluster: Cluster, alice: Path) -> None:
    await kubelet_lease(cluster, "node-a1")
    path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-a1"
    result = await kubectl(alice, "get", "--raw", path)
    assert result.code == 0, result.err
    lease = json.loads(result.out)
    assert (lease["kind"], lease["spec"]["holderIdentity"]) == ("Lease", "node-a1")


LEASES = "leases.coordination.k8s.io"


@pytest.mark.parametrize(
    ("path", "verb", "what"),
    [
        # another tenant's node: asked as alice, never read as the proxy
        ("namespaces/kube-node-lease/leases/node-b1", "get", f'{LEASES} "node-b1"'),
        ("namespaces/kube-node-lease/leases", "list", LEASES),
        ("namespaces/kube-system/leases/node-a1", "get", f'{LEASES} "node-a1"'),
    ],
)
async def test_any_other_lease_read_is_the_clusters_rbac_answering_the_tenant(
    cluster: Cluster, alice: Path, path: str, verb: str, what: str
) -> None:
    await kubelet_lease(cluster, "node-b1")
    result = await kubectl(alice, "get", "--raw", f"/apis/coordination.k8s.io/v1/{path}")
    namespace = path.split("/")[1]
    assert result.code == 1
    assert result.err.strip() == (
        f'Error from server (Forbidden): {what} is forbidden: User "alice" cannot {verb} '
        f'resource "leases" in API group "coordination.k8s.io" in the namespace "{namespace}"'
    )


@pytest.mark.parametrize(
    ("args", "answer"),
    [
        (("get", "leases/node-a1", "-n", "kube-node-lease"), "yes"),
        (("get", "leases/node-b1", "-n", "kube-node-lease"), "no"),
        (("list", "leases", "-n", "kube-node-lease"), "no"),
        (("update", "leases/node-a1", "-n", "kube-node-lease"), "no"),
    ],
)
async def test_can_i_says_yes_for_exactly_the_lease_reads_served(
    cluster: Cluster, alice: Path, args: tuple[str, ...], answer: str
) -> None:
    await kubelet_lease(cluster, "node-a1")
    result = await kubectl(alice, "auth", "can-i", *args)
    assert result.out.strip() == answer, result.err


async def test_a_same_named_tenant_from_another_source_gains_no_lease(
    demo: Demo, cluster: Cluster, alice: Path
) -> None:
    """A Tenant CR named like a config tenant is its own tenant: its rules are its own, and the
    Leases the proxy reads for one are never read for the other (owned sets are per rule)."""
    await kubelet_lease(cluster, "node-a1")
    await cluster.create(
        {
            "apiVersion": "tenancy.tenant-proxy.io/v1alpha1",
            "kind": "Tenant",
            "metadata": {"name": "team-a"},
            "spec": {
                "members": {"users": ["mallory"]},
                "nodeSelector": {"matchLabels": {"pool": "none"}},
            },
        }
    )
    mallory = demo.kubeconfig("mallory", [])
    async with asyncio.timeout(10):  # the proxy learns of the CR through its informer
        while not (await kubectl(mallory, "get", "namespaces", "-o", "name")).names():
            await asyncio.sleep(0.1)  # polling kubectl, bounded by the timeout
    assert (await kubectl(mallory, "get", "nodes", "-o", "name")).names() == set()
    path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-a1"
    for _ in range(2):  # whichever asks first, the answers stay each caller's own
        assert (await kubectl(alice, "get", "--raw", path)).code == 0
        refused = await kubectl(mallory, "get", "--raw", path)
        assert refused.code != 0
        assert 'User "mallory" cannot get resource "leases"' in refused.err
