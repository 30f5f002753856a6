"""metrics.k8s.io over real TLS and real kubectl, as a cluster with metrics-server serves it;
and the node Leases the emulator's kubelets write."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tenant_proxy.emulator.app import Emulator
from tenant_proxy.emulator.clock import parse_timestamp
from tenant_proxy.emulator.testing import kubectl_async, reference_emulator, session_for

ADMIN = ("admin", ("system:masters",))
NODES = "/apis/metrics.k8s.io/v1beta1/nodes"
NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {"name": "node-m", "labels": {"pool": "metered"}},
    "status": {
        "capacity": {"cpu": "3", "memory": "6Gi"},
        "allocatable": {"cpu": "3", "memory": "6Gi"},
    },
}


def pod(name: str, namespace: str, *requests: dict[str, str], phase: str = "") -> dict[str, Any]:
    containers = [
        {"name": f"c{i}", "image": "busybox", "resources": {"requests": r}}
        for i, r in enumerate(requests)
    ]
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"containers": containers},
    }
    if phase:
        obj["status"] = {"phase": phase}
    return obj


@pytest.fixture
async def metered() -> AsyncIterator[Emulator]:
    """The reference world on a cluster with metrics-server installed, plus node-m."""
    em = await reference_emulator(metrics_server=True)
    await em.apply(NODE)
    try:
        yield em
    finally:
        await em.stop()


Get = Callable[..., Awaitable[tuple[int, Any]]]


@pytest.fixture
async def get(metered: Emulator) -> AsyncIterator[Get]:
    """`await get(path, user=ADMIN, accept=None)` -> (status, decoded JSON body)."""
    sessions: dict[tuple[str, tuple[str, ...]], aiohttp.ClientSession] = {}

    async def run(
        path: str, user: tuple[str, tuple[str, ...]] = ADMIN, accept: str | None = None
    ) -> tuple[int, Any]:
        if user not in sessions:
            sessions[user] = session_for(metered, *user)
        headers = {"Accept": accept} if accept else {}
        async with sessions[user].get(path, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    try:
        yield run
    finally:
        for session in sessions.values():
            await session.close()


# --- discovery and installation -----------------------------------------------------------------


async def test_the_group_comes_last_in_discovery_with_its_two_read_only_resources(
    get: Get,
) -> None:
    _, groups = await get("/apis")
    last = groups["groups"][-1]
    version = {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}
    assert last == {"name": "metrics.k8s.io", "versions": [version], "preferredVersion": version}
    assert await get("/apis/metrics.k8s.io") == (
        200,
        {"kind": "APIGroup", "apiVersion": "v1", **last},
    )
    # metrics-server v0.6's own document: no singular names, no storage version hashes.
    assert await get("/apis/metrics.k8s.io/v1beta1") == (
        200,
        {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": "metrics.k8s.io/v1beta1",
            "resources": [
                {
                    "name": "nodes",
                    "singularName": "",
                    "namespaced": False,
                    "kind": "NodeMetrics",
                    "verbs": ["get", "list"],
                },
                {
                    "name": "pods",
                    "singularName": "",
                    "namespaced": True,
                    "kind": "PodMetrics",
                    "verbs": ["get", "list"],
                },
            ],
        },
    )


async def test_metrics_server_installs_its_apiservice_and_aggregated_reader_role(
    get: Get,
) -> None:
    code, service = await get("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io")
    assert code == 200
    assert service["spec"]["group"] == "metrics.k8s.io"
    assert service["spec"]["groupPriorityMinimum"] == 100
    path = "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:aggregated-metrics-reader"
    _, role = await get(path)
    assert role["rules"] == [
        {
            "apiGroups": ["metrics.k8s.io"],
            "resources": ["pods", "nodes"],
            "verbs": ["get", "list", "watch"],
        }
    ]


async def test_a_cluster_without_metrics_server_has_no_metrics_api(emulator: Emulator) -> None:
    async with session_for(emulator, *ADMIN) as session:
        async with session.get("/apis") as resp:
            groups = [g["name"] for g in (await resp.json())["groups"]]
        async with session.get(NODES) as resp:
            status = await resp.json()
    assert "metrics.k8s.io" not in groups
    assert (resp.status, status["message"]) == (
        404,
        "the server could not find the requested resource",
    )


# --- NodeMetrics --------------------------------------------------------------------------------


async def test_node_metrics_carry_the_nodes_labels_and_a_quarter_of_its_capacity(get: Get) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    code, metrics = await get(f"{NODES}/node-m")
    after = dt.datetime.now(dt.UTC)
    assert code == 200
    created = parse_timestamp(metrics["metadata"]["creationTimestamp"])
    scraped = parse_timestamp(metrics["timestamp"])
    assert created is not None
    assert scraped is not None
    assert before <= created <= after
    assert int(scraped.timestamp()) % 15 == 0
    assert dt.timedelta(0) <= created - scraped < dt.timedelta(seconds=15)
    assert metrics == {
        "kind": "NodeMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {
            "name": "node-m",
            "creationTimestamp": metrics["metadata"]["creationTimestamp"],
            "labels": {"pool": "metered"},
        },
        "timestamp": metrics["timestamp"],
        "window": "15s",
        "usage": {"cpu": "750m", "memory": "1536Mi"},
    }


async def test_node_metrics_list_is_sorted_and_honours_selectors(get: Get) -> None:
    _, everything = await get(NODES)
    assert (everything["kind"], everything["metadata"]) == ("NodeMetricsList", {})
    names = [i["metadata"]["name"] for i in everything["items"]]
    assert names == ["node-a1", "node-b1", "node-m", "node-shared"]
    assert all("kind" not in i for i in everything["items"])
    _, labelled = await get(f"{NODES}?labelSelector=pool%20in%20(team-a,metered)")
    assert [i["metadata"]["name"] for i in labelled["items"]] == ["node-a1", "node-m"]
    _, named = await get(f"{NODES}?fieldSelector=metadata.name%3Dnode-b1")
    assert [i["metadata"]["name"] for i in named["items"]] == ["node-b1"]


async def test_a_node_without_capacity_reports_zero_usage(get: Get) -> None:
    _, metrics = await get(f"{NODES}/node-a1")
    assert metrics["usage"] == {"cpu": "0", "memory": "0"}


async def test_a_missing_node_is_the_node_listers_not_found(get: Get) -> None:
    assert await get(f"{NODES}/nope") == (
        404,
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": 'node "nope" not found',
            "reason": "NotFound",
            "details": {"name": "nope", "kind": "node"},
            "code": 404,
        },
    )


@pytest.mark.parametrize(
    ("path", "code", "message"),
    [
        (
            f"{NODES}?watch=true",
            405,
            'watch is not supported on resources of kind "nodes.metrics.k8s.io"',
        ),
        (
            "/apis/metrics.k8s.io/v1beta1/watch/nodes",
            404,
            "the server could not find the requested resource",
        ),
    ],
)
async def test_metrics_cannot_be_watched(get: Get, path: str, code: int, message: str) -> None:
    status, body = await get(path)
    assert (status, body["message"]) == (code, message)


async def test_metrics_cannot_be_written(metered: Emulator) -> None:
    async with session_for(metered, *ADMIN) as session:
        async with session.post(NODES, json={"metadata": {"name": "x"}}) as resp:
            body = await resp.json()
    assert (resp.status, body["reason"]) == (405, "MethodNotAllowed")


async def test_node_metrics_table_has_metrics_servers_columns(get: Get) -> None:
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io"
    _, table = await get(f"{NODES}?labelSelector=pool%3Dmetered", accept=accept)
    assert [(c["name"], c["format"]) for c in table["columnDefinitions"]] == [
        ("Name", "name"),
        ("cpu", "quantity"),
        ("memory", "quantity"),
        ("Window", "duration"),
    ]
    (row,) = table["rows"]
    assert row["cells"] == ["node-m", "750m", "1536Mi", "15s"]
    assert row["object"]["kind"] == "PartialObjectMetadata"
    # metrics-server names its columns after the first row: an empty Table has none.
    _, empty = await get(f"{NODES}?labelSelector=pool%3Dnone", accept=accept)
    assert (empty["columnDefinitions"], empty["rows"], empty["metadata"]) == (None, None, {})


# --- PodMetrics ---------------------------------------------------------------------------------


async def test_pod_metrics_sum_what_each_container_requests(metered: Emulator, get: Get) -> None:
    await metered.apply(pod("web", "team-a-dev", {"cpu": "250m", "memory": "64Mi"}, {"cpu": "1"}))
    code, metrics = await get("/apis/metrics.k8s.io/v1beta1/namespaces/team-a-dev/pods/web")
    assert code == 200
    assert metrics["metadata"]["namespace"] == "team-a-dev"
    assert metrics["metadata"]["labels"] == {"app": "web"}
    assert metrics["containers"] == [
        {"name": "c0", "usage": {"cpu": "250m", "memory": "64Mi"}},
        {"name": "c1", "usage": {"cpu": "1", "memory": "0"}},
    ]
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io"
    _, table = await get("/apis/metrics.k8s.io/v1beta1/namespaces/team-a-dev/pods", accept=accept)
    assert [r["cells"] for r in table["rows"]] == [["web", "1250m", "64Mi", "15s"]]


async def test_only_running_pods_have_metrics(metered: Emulator, get: Get) -> None:
    await metered.apply(pod("up", "team-a-dev", {"cpu": "100m"}))
    await metered.apply(pod("waiting", "team-a-dev", {"cpu": "100m"}, phase="Pending"))
    await metered.apply(pod("other", "team-b-dev", {"cpu": "100m"}))
    _, listed = await get("/apis/metrics.k8s.io/v1beta1/namespaces/team-a-dev/pods")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["up"]
    _, everywhere = await get("/apis/metrics.k8s.io/v1beta1/pods")
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere["items"]] == [
        ("team-a-dev", "up"),
        ("team-b-dev", "other"),
    ]
    code, status = await get("/apis/metrics.k8s.io/v1beta1/namespaces/team-a-dev/pods/waiting")
    assert (code, status["message"], status["details"]) == (
        404,
        'podmetrics.metrics.k8s.io "team-a-dev/waiting" not found',
        {"name": "team-a-dev/waiting", "group": "metrics.k8s.io", "kind": "podmetrics"},
    )
    code, status = await get("/apis/metrics.k8s.io/v1beta1/namespaces/team-a-dev/pods/gone")
    assert (code, status["message"]) == (404, 'pods "gone" not found')


# --- RBAC ---------------------------------------------------------------------------------------


async def test_namespace_admins_read_pod_metrics_but_not_node_metrics(get: Get) -> None:
    alice = ("alice", ("tenant-a-devs",))
    code, _ = await get("/apis/metrics.k8s.io/v1beta1/namespaces/team-a-dev/pods", user=alice)
    assert code == 200
    code, status = await get(NODES, user=alice)
    assert (code, status["message"]) == (
        403,
        'nodes.metrics.k8s.io is forbidden: User "alice" cannot list resource "nodes" in API '
        'group "metrics.k8s.io" at the cluster scope',
    )


# --- kubectl ------------------------------------------------------------------------------------


async def test_kubectl_top_node_shows_the_usage_against_allocatable(
    metered: Emulator, tmp_path: Path
) -> None:
    admin = metered.write_kubeconfig(tmp_path / "admin.kubeconfig", *ADMIN)
    result = await kubectl_async(admin, "top", "node", "node-m", "--no-headers")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["node-m", "750m", "25%", "1536Mi", "25%"]
    missing = await kubectl_async(admin, "top", "node", "nope")
    assert missing.stderr.strip() == 'Error from server (NotFound): node "nope" not found'


async def test_kubectl_top_pod_sums_the_containers(metered: Emulator, tmp_path: Path) -> None:
    await metered.apply(pod("web", "team-a-dev", {"cpu": "250m", "memory": "64Mi"}, {"cpu": "1"}))
    admin = metered.write_kubeconfig(tmp_path / "admin.kubeconfig", *ADMIN)
    result = await kubectl_async(admin, "top", "pod", "-n", "team-a-dev", "--no-headers")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["web", "1250m", "64Mi"]


# --- node Leases --------------------------------------------------------------------------------


async def test_every_node_has_its_kubelets_lease(metered: Emulator, get: Get) -> None:
    _, leases = await get("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases")
    by_name = {i["metadata"]["name"]: i for i in leases["items"]}
    assert set(by_name) == {"node-a1", "node-b1", "node-m", "node-shared"}
    node = metered.get("v1", "Node", "node-m")
    assert node is not None
    lease = by_name["node-m"]
    assert lease["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "node-m", "uid": node["metadata"]["uid"]}
    ]
    assert lease["spec"]["holderIdentity"] == "node-m"
    assert lease["spec"]["leaseDurationSeconds"] == 40
    renewed = dt.datetime.strptime(lease["spec"]["renewTime"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert renewed.replace(tzinfo=dt.UTC) <= dt.datetime.now(dt.UTC)


async def test_a_deleted_nodes_lease_is_collected(metered: Emulator, get: Get) -> None:
    path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-m"
    assert (await get(path))[0] == 200
    await metered.delete("v1", "Node", "node-m")
    code, status = await get(path)
    assert (code, status["reason"]) == (404, "NotFound")
