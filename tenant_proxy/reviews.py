"""Access reviews as a tenant's tools ask them, answered for what the proxy serves. Pure.

`kubectl auth can-i list namespaces`, k9s, Headlamp and Lens ask SelfSubjectAccessReviews and
SelfSubjectRulesReviews before they list. The cluster's RBAC says no for cluster-scoped reads a
tenant lacks; through the proxy those reads are served, filtered. So the upstream answer is kept
and only amended: a denied get/list/watch of a resource filtered for the caller becomes allowed,
and the rules review gains get/list/watch on each filtered resource (as capsule-proxy does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tenant_proxy.identity import Identity
from tenant_proxy.kube.resources import (
    NAMESPACES,
    NODE_LEASE_NAMESPACE,
    NODE_LEASES,
    GroupResource,
)
from tenant_proxy.tenancy.self_service import OwnerRights

GROUP = "authorization.k8s.io"
ACCESS = "selfsubjectaccessreviews"
RULES = "selfsubjectrulesreviews"
READ_VERBS = ("get", "list", "watch")
REASON = "tenant-proxy serves this read filtered to the caller's tenants"
SELF_SERVICE_REASON = "tenant-proxy creates and deletes namespaces for the owners of a tenant"


AUTHN_GROUP = "authentication.k8s.io"
SELF = "selfsubjectreviews"


# Asked of the API server whatever the client accepts: the proxy must read the answer to amend
# it, and cannot write protobuf (kubectl ≥ 1.3x accepts protobuf first, then JSON).
UPSTREAM_ACCEPT = "application/json"
NOT_ACCEPTABLE = "only the following media types are accepted: application/json"


def accepts_json(accept: str | None) -> bool:
    """Whether a client with this Accept header takes a JSON answer: a missing header, or a
    clause `application/json`, `application/*` or `*/*` that asks no transformation (`as=`)
    and has a non-zero quality."""
    if accept is None or not accept.strip():
        return True
    return any(_json_clause(part) for part in accept.split(","))


def _json_clause(clause: str) -> bool:
    media, *params = (piece.strip().lower() for piece in clause.split(";"))
    if media not in ("application/json", "application/*", "*/*", "*"):
        return False
    for param in params:
        key, _, value = (p.strip() for p in param.partition("="))
        if key in ("as", "g", "v"):
            return False
        if key == "q" and _quality(value) <= 0:
            return False
    return True


def _quality(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 1.0


def is_review(group: str, resource: str, verb: str) -> bool:
    return verb == "create" and group == GROUP and resource in (ACCESS, RULES)


def is_whoami(group: str, resource: str, verb: str) -> bool:
    return verb == "create" and group == AUTHN_GROUP and resource == SELF


def self_subject_review(identity: Identity, version: str) -> dict[str, Any]:
    """`kubectl auth whoami`, answered by the proxy: it is the one that authenticated the caller
    (the API server would only echo the impersonation), and it works on servers older than
    SelfSubjectReview (v1.27)."""
    groups = list(identity.groups)
    if identity.user != "system:anonymous" and "system:authenticated" not in groups:
        groups.append("system:authenticated")  # as the API server adds to every authenticated user
    user: dict[str, Any] = {"username": identity.user, "groups": groups}
    if identity.uid:
        user["uid"] = identity.uid
    if identity.extra:
        user["extra"] = {k: list(v) for k, v in identity.extra.items()}
    return {
        "kind": "SelfSubjectReview",
        "apiVersion": f"{AUTHN_GROUP}/{version}",
        "metadata": {"creationTimestamp": None},
        "status": {"userInfo": user},
    }


def amend_access_review(
    review: Mapping[str, Any],
    filters: Callable[[GroupResource], bool],
    owns_node: Callable[[str], bool] = lambda _name: False,
    self_service: OwnerRights = OwnerRights(),
) -> dict[str, Any]:
    """The SelfSubjectAccessReview answer, allowed where the proxy serves the read filtered
    (and for the get of an owned node's Lease, which the proxy reads for the caller), and
    for the namespace creates and deletes it makes for a tenant owner."""
    out = dict(review)
    attrs = (review.get("spec") or {}).get("resourceAttributes") or {}
    status = dict(review.get("status") or {})
    gr = GroupResource(str(attrs.get("group") or ""), str(attrs.get("resource") or ""))
    # Filtered resources are cluster-scoped: a namespace in the review (kubectl sends its
    # default one) does not change what the proxy serves.
    served = attrs.get("verb") in READ_VERBS and not attrs.get("subresource") and filters(gr)
    name = str(attrs.get("name") or "")
    lease = (
        attrs.get("verb") == "get"
        and gr == NODE_LEASES
        and attrs.get("namespace") == NODE_LEASE_NAMESPACE
        and not attrs.get("subresource")
        and bool(name)
    )
    served = served or (lease and owns_node(name))
    made = gr == NAMESPACES and not attrs.get("subresource") and _made(attrs, name, self_service)
    if (served or made) and not status.get("allowed"):
        status = {"allowed": True, "reason": REASON if served else SELF_SERVICE_REASON}
    out["status"] = status
    return out


def _made(attrs: Mapping[str, Any], name: str, self_service: OwnerRights) -> bool:
    verb = attrs.get("verb")
    if verb == "create":
        return self_service.creatable(name)
    return verb == "delete" and bool(name) and name in self_service.deletable


def amend_rules_review(
    review: Mapping[str, Any],
    filtered: Iterable[GroupResource],
    self_service: OwnerRights = OwnerRights(),
) -> dict[str, Any]:
    """The SelfSubjectRulesReview answer plus read rules for every filtered resource, and the
    namespace creates and deletes the proxy makes for a tenant owner."""
    out = dict(review)
    status = dict(review.get("status") or {})
    rules = list(status.get("resourceRules") or [])
    for gr in sorted(filtered):
        rules.append(
            {"verbs": list(READ_VERBS), "apiGroups": [gr.group], "resources": [gr.resource]}
        )
    namespaces = {"apiGroups": [NAMESPACES.group], "resources": [NAMESPACES.resource]}
    if self_service.creatable(""):
        rules.append({"verbs": ["create"], **namespaces})
    if self_service.deletable:
        names = sorted(self_service.deletable)
        rules.append({"verbs": ["delete"], **namespaces, "resourceNames": names})
    status["resourceRules"] = rules
    out["status"] = status
    return out
