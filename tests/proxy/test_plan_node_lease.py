"""`kubectl describe node` reads the node's Lease: the proxy reads it for the node's tenant only."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.kube.resources import NODE_METRICS, NODES, GroupResource
from tenant_proxy.plan import (
    Filter,
    ListAcrossNamespaces,
    PassThrough,
    Plan,
    ReadNodeLease,
    plan_request,
)
from tenant_proxy.requestinfo import classify

LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
MINE = frozenset({"node-a1"})


def filters(gr: GroupResource) -> bool:
    return gr in {NODES, NODE_METRICS, GroupResource("", "namespaces")}


def owns_node(name: str) -> bool:
    return name in MINE


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", f"{LEASES}/node-a1", "", ReadNodeLease()),
        ("GET", f"{LEASES}/node-a1", "resourceVersion=0", ReadNodeLease()),
        ("HEAD", f"{LEASES}/node-a1", "", ReadNodeLease()),
        # another tenant's node, or no such node: the cluster's RBAC answers, as the caller
        ("GET", f"{LEASES}/node-b1", "", PassThrough()),
        # anything but a get of that one object
        ("GET", LEASES, "", PassThrough()),
        ("GET", LEASES, "fieldSelector=metadata.name%3Dnode-a1", PassThrough()),
        # a named GET stays a get whatever its query (RequestInfo); the read forwards no watch
        ("GET", f"{LEASES}/node-a1", "watch=true", ReadNodeLease()),
        ("GET", "/apis/coordination.k8s.io/v1/watch/namespaces/kube-node-lease/leases/node-a1", "", PassThrough()),  # noqa: E501
        ("PUT", f"{LEASES}/node-a1", "", PassThrough()),
        ("PATCH", f"{LEASES}/node-a1", "", PassThrough()),
        ("DELETE", f"{LEASES}/node-a1", "", PassThrough()),
        ("GET", f"{LEASES}/node-a1/status", "", PassThrough()),
        # the same name elsewhere is not a node's heartbeat
        ("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/node-a1", "", PassThrough()),  # noqa: E501
        ("GET", "/apis/coordination.k8s.io/v1/leases", "", ListAcrossNamespaces()),
        ("GET", "/apis/other.example.com/v1/namespaces/kube-node-lease/leases/node-a1", "", PassThrough()),  # noqa: E501
        ("GET", "/api/v1/namespaces/kube-node-lease/configmaps/node-a1", "", PassThrough()),
        # the node's metrics are filtered like the node
        ("GET", "/apis/metrics.k8s.io/v1beta1/nodes", "", Filter(NODE_METRICS)),
        ("GET", "/apis/metrics.k8s.io/v1beta1/nodes/node-b1", "", Filter(NODE_METRICS)),
    ],
)  # fmt: skip
def test_node_lease_reads_are_planned(method: str, path: str, query: str, expected: Plan) -> None:
    assert plan_request(classify(method, path, query), filters, owns_node) == expected


def test_without_a_view_a_lease_read_passes_through() -> None:
    info = classify("GET", f"{LEASES}/node-a1", "")
    assert plan_request(info, None, owns_node) == PassThrough()


def test_by_default_no_node_is_owned() -> None:
    assert plan_request(classify("GET", f"{LEASES}/node-a1", ""), filters) == PassThrough()


def test_ownership_is_asked_only_for_a_node_lease_read() -> None:
    asked: list[str] = []

    def record(name: str) -> bool:
        asked.append(name)
        return True

    for path in ("/api/v1/nodes/node-a1", "/api/v1/namespaces/x/pods/node-a1", f"{LEASES}"):
        plan_request(classify("GET", path, ""), filters, record)
    assert asked == []
    plan_request(classify("GET", f"{LEASES}/node-a1", ""), filters, record)
    assert asked == ["node-a1"]


segments = st.sampled_from(
    ["api", "apis", "v1", "coordination.k8s.io", "namespaces", "kube-node-lease", "leases",
     "node-a1", "node-b1", "watch", "status", "pods", "kube-system"]
)  # fmt: skip


@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
    path=st.lists(segments, min_size=1, max_size=8).map(lambda s: "/" + "/".join(s)),
    query=st.sampled_from(["", "watch=1", "resourceVersion=0", "labelSelector=a%3Db"]),
    owned=st.booleans(),
)
def test_the_proxy_reads_only_an_owned_nodes_lease(
    method: str, path: str, query: str, owned: bool
) -> None:
    """Whatever the request, ReadNodeLease means: a get of kube-node-lease/leases/<an owned
    node>, nothing else."""
    try:
        info = classify(method, path, query)
    except Exception:
        return  # refused before planning
    plan = plan_request(info, filters, lambda name: owned and name in MINE)
    if isinstance(plan, ReadNodeLease):
        assert (info.verb, info.api_group, info.resource) == (
            "get",
            "coordination.k8s.io",
            "leases",
        )
        assert (info.namespace, info.name, info.subresource) == ("kube-node-lease", "node-a1", "")
        assert owned
