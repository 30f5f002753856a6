"""The single decision point: every kind of request lands on the plan it should."""

from __future__ import annotations

import pytest

from tenant_proxy.kube.resources import GroupResource
from tenant_proxy.plan import (
    AmendReview,
    Filter,
    ListAcrossNamespaces,
    PassThrough,
    Plan,
    WhoAmI,
    plan_request,
)
from tenant_proxy.requestinfo import classify

FILTERED = {
    GroupResource("", "namespaces"),
    GroupResource("", "nodes"),
    GroupResource("storage.k8s.io", "storageclasses"),
}


def filters(gr: GroupResource) -> bool:
    return gr in FILTERED


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/namespaces", "", Filter(GroupResource("", "namespaces"))),
        ("GET", "/api/v1/namespaces/x", "", Filter(GroupResource("", "namespaces"))),
        ("GET", "/api/v1/namespaces", "watch=1", Filter(GroupResource("", "namespaces"))),
        ("GET", "/api/v1/watch/nodes", "", Filter(GroupResource("", "nodes"))),
        (
            "GET",
            "/apis/storage.k8s.io/v1/storageclasses/gold",
            "",
            Filter(GroupResource("storage.k8s.io", "storageclasses")),
        ),
        # writes and subresources are the cluster's RBAC's to decide
        ("DELETE", "/api/v1/nodes/n1", "", PassThrough()),
        ("PATCH", "/api/v1/namespaces/x", "", PassThrough()),
        ("POST", "/api/v1/namespaces", "", PassThrough()),
        ("GET", "/api/v1/namespaces/x/status", "", PassThrough()),
        ("GET", "/api/v1/nodes/n1/proxy/metrics", "", PassThrough()),
        # namespaced reads pass; cluster-wide lists of unfiltered kinds may fan out
        ("GET", "/api/v1/namespaces/x/pods", "", PassThrough()),
        ("GET", "/api/v1/pods", "", ListAcrossNamespaces()),
        ("GET", "/api/v1/pods", "watch=1", PassThrough()),
        ("GET", "/apis/node.k8s.io/v1/runtimeclasses/x", "", PassThrough()),
        # reviews
        ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "", AmendReview()),
        ("POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", "", AmendReview()),
        ("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", "", WhoAmI()),
        ("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", "", PassThrough()),
        # discovery and non-resource paths
        ("GET", "/api", "", PassThrough()),
        ("GET", "/version", "", PassThrough()),
    ],
)
def test_tenant_requests_are_planned(method: str, path: str, query: str, expected: Plan) -> None:
    assert plan_request(classify(method, path, query), filters) == expected


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/namespaces"),
        ("GET", "/api/v1/pods"),
        ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"),
    ],
)
def test_nothing_is_filtered_without_a_view(method: str, path: str) -> None:
    """The admin listener and callers in no tenant: the cluster's RBAC decides everything."""
    assert plan_request(classify(method, path, ""), None) == PassThrough()


def test_whoami_is_answered_by_the_proxy_even_without_a_view() -> None:
    info = classify("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", "")
    assert plan_request(info, None) == WhoAmI()
