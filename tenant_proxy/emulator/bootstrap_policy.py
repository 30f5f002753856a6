"""The RBAC objects a fresh cluster has: a part of v1.24's bootstrap policy.

From plugin/pkg/auth/authorizer/rbac/bootstrappolicy, as the reference server serves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tenant_proxy.emulator.rbac import RBAC_GROUP, PolicyRule
from tenant_proxy.emulator.types import KubeObject

_READ = ["get", "list", "watch"]
_WRITE = ["create", "delete", "deletecollection", "patch", "update"]
_AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"


def _rule(verbs: list[str], groups: list[str], resources: list[str]) -> PolicyRule:
    return {"verbs": verbs, "apiGroups": groups, "resources": resources}


def _urls(*urls: str) -> PolicyRule:
    return {"verbs": ["get"], "nonResourceURLs": list(urls)}


_EDIT_RULES = [
    _rule(
        _READ,
        [""],
        ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"],
    ),
    _rule(["impersonate"], [""], ["serviceaccounts"]),
    _rule(_WRITE, [""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
    _rule(
        _WRITE,
        [""],
        [
            "configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
            "replicationcontrollers/scale", "secrets", "serviceaccounts", "services",
            "services/proxy",
        ],
    ),
    _rule(
        _WRITE,
        ["apps"],
        [
            "daemonsets", "deployments", "deployments/rollback", "deployments/scale",
            "replicasets", "replicasets/scale", "statefulsets", "statefulsets/scale",
        ],
    ),
    _rule(_WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
    _rule(_WRITE, ["batch"], ["cronjobs", "jobs"]),
    _rule(
        _WRITE,
        ["extensions"],
        [
            "daemonsets", "deployments", "deployments/rollback", "deployments/scale",
            "ingresses", "networkpolicies", "replicasets", "replicasets/scale",
            "replicationcontrollers/scale",
        ],
    ),
    _rule(_WRITE, ["policy"], ["poddisruptionbudgets"]),
    _rule(_WRITE, ["networking.k8s.io"], ["ingresses", "networkpolicies"]),
]  # fmt: skip

_VIEW_RULES = [
    _rule(
        _READ,
        [""],
        [
            "configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status",
            "pods", "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts",
            "services", "services/status",
        ],
    ),
    _rule(
        _READ,
        [""],
        [
            "bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
            "replicationcontrollers/status", "resourcequotas", "resourcequotas/status",
        ],
    ),
    _rule(_READ, [""], ["namespaces"]),
    _rule(_READ, ["discovery.k8s.io"], ["endpointslices"]),
    _rule(
        _READ,
        ["apps"],
        [
            "controllerrevisions", "daemonsets", "daemonsets/status", "deployments",
            "deployments/scale", "deployments/status", "replicasets", "replicasets/scale",
            "replicasets/status", "statefulsets", "statefulsets/scale", "statefulsets/status",
        ],
    ),
    _rule(_READ, ["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
    _rule(_READ, ["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
    _rule(
        _READ,
        ["extensions"],
        [
            "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
            "deployments/status", "ingresses", "ingresses/status", "networkpolicies",
            "replicasets", "replicasets/scale", "replicasets/status",
            "replicationcontrollers/scale",
        ],
    ),
    _rule(_READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
    _rule(_READ, ["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"]),
]  # fmt: skip

_ADMIN_RULES = [
    _rule(["create"], ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
    _rule(sorted(_READ + _WRITE), [RBAC_GROUP], ["rolebindings", "roles"]),
]

_PUBLIC_URLS = ("/healthz", "/livez", "/readyz", "/version", "/version/")


def _meta(name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults", **(labels or {})},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    }


def _cluster_role(
    name: str,
    rules: list[PolicyRule],
    labels: Mapping[str, str] | None = None,
    aggregate_from: str = "",
) -> KubeObject:
    role: KubeObject = {
        "kind": "ClusterRole",
        "apiVersion": f"{RBAC_GROUP}/v1",
        "metadata": _meta(name, labels),
        "rules": rules,
    }
    if aggregate_from:
        selector = {"matchLabels": {f"{_AGGREGATE}{aggregate_from}": "true"}}
        role["aggregationRule"] = {"clusterRoleSelectors": [selector]}
    return role


def _binding(name: str, groups: list[str], role: str | None = None) -> KubeObject:
    return {
        "kind": "ClusterRoleBinding",
        "apiVersion": f"{RBAC_GROUP}/v1",
        "metadata": _meta(name),
        "subjects": [{"kind": "Group", "apiGroup": RBAC_GROUP, "name": g} for g in groups],
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role or name},
    }


def bootstrap_objects() -> list[KubeObject]:
    """ClusterRoles and ClusterRoleBindings of a fresh cluster, bindings in the order the
    reference server's SelfSubjectRulesReview lists them.

    Exactly v1.24's: system:basic-user may not create selfsubjectreviews (v1.28+ servers allow
    it), so `kubectl auth whoami` directly against the emulator works for superusers only, as
    the reference server's rules review shows; through the proxy it works for everyone (the
    proxy answers it from the caller it authenticated).
    """
    authn = ["system:authenticated"]
    return [
        _cluster_role(
            "cluster-admin",
            [_rule(["*"], ["*"], ["*"]), {"verbs": ["*"], "nonResourceURLs": ["*"]}],
        ),
        _cluster_role("admin", [], aggregate_from="admin"),
        _cluster_role("edit", [], {f"{_AGGREGATE}admin": "true"}, aggregate_from="edit"),
        _cluster_role("view", [], {f"{_AGGREGATE}edit": "true"}, aggregate_from="view"),
        _cluster_role("system:aggregate-to-admin", _ADMIN_RULES, {f"{_AGGREGATE}admin": "true"}),
        _cluster_role("system:aggregate-to-edit", _EDIT_RULES, {f"{_AGGREGATE}edit": "true"}),
        _cluster_role("system:aggregate-to-view", _VIEW_RULES, {f"{_AGGREGATE}view": "true"}),
        _cluster_role(
            "system:basic-user",
            [
                _rule(
                    ["create"],
                    ["authorization.k8s.io"],
                    ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
            ],
        ),
        _cluster_role("system:public-info-viewer", [_urls(*_PUBLIC_URLS)]),
        _cluster_role(
            "system:discovery",
            [
                _urls(
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                )
            ],
        ),
        _cluster_role(
            "system:service-account-issuer-discovery",
            [_urls("/.well-known/openid-configuration", "/openid/v1/jwks")],
        ),
        _binding("cluster-admin", ["system:masters"]),
        _binding("system:basic-user", authn),
        _binding("system:public-info-viewer", [*authn, "system:unauthenticated"]),
        _binding("system:discovery", authn),
        _binding("system:service-account-issuer-discovery", ["system:serviceaccounts"]),
    ]
