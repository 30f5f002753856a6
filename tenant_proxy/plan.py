"""What to do with one classified request: the proxy's single decision point. Pure.

PassThrough  -- forward impersonated; the cluster's RBAC decides (writes, namespaced reads,
                resources without a rule, everything on the admin listener).
Filter       -- a read (get / list / watch) of a resource a tenancy rule governs: read it with
                the proxy's own credentials and answer only what the caller's view owns.
ReadNodeLease -- a get of the Lease of a node the caller's tenant owns (`kubectl describe node`
                reads it from kube-node-lease, where tenants have no RBAC): read it as the proxy.
CreateNamespace / DeleteNamespace -- a tenant owner's namespace create or delete: checked by
                tenancy/self_service.py, made with the proxy's namespace-creator identity.
Deny         -- answered by the proxy itself with a Status.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tenant_proxy import status
from tenant_proxy.kube.resources import NAMESPACES, NODE_LEASE_NAMESPACE, NODE_LEASES, GroupResource
from tenant_proxy.requestinfo import RequestInfo
from tenant_proxy.reviews import is_review, is_whoami

FILTERED_VERBS = frozenset({"get", "list", "watch"})


@dataclass(frozen=True)
class PassThrough:
    """Forward as the caller."""


@dataclass(frozen=True)
class Filter:
    """Read as the proxy, answer the caller's share of `group_resource`."""

    group_resource: GroupResource


@dataclass(frozen=True)
class AmendReview:
    """A SelfSubject(Access|Rules)Review: forward as the caller, amend for what is served."""


@dataclass(frozen=True)
class ListAcrossNamespaces:
    """A cluster-wide list as the caller; if RBAC refuses, the union over its namespaces."""


@dataclass(frozen=True)
class WhoAmI:
    """A SelfSubjectReview: the proxy knows the caller; it answers itself."""


@dataclass(frozen=True)
class ReadNodeLease:
    """Read the Lease of a node the caller owns as the proxy, and relay it."""


@dataclass(frozen=True)
class CreateNamespace:
    """A tenant owner creates a namespace: self-service, made as the namespace creator."""


@dataclass(frozen=True)
class DeleteNamespace:
    """A tenant owner deletes a namespace: its own as the namespace creator, others 404."""


@dataclass(frozen=True)
class Deny:
    error: status.ApiError


Plan = (
    PassThrough
    | Filter
    | AmendReview
    | ListAcrossNamespaces
    | WhoAmI
    | ReadNodeLease
    | CreateNamespace
    | DeleteNamespace
    | Deny
)


def plan_request(
    info: RequestInfo,
    filters: Callable[[GroupResource], bool] | None,
    owns_node: Callable[[str], bool] = lambda _name: False,
    owner: Callable[[], bool] = lambda: False,
) -> Plan:
    """Decide how to serve `info`.

    `filters` says which resources a tenancy rule governs for this caller; None when nothing is
    filtered for it (the admin listener, or a caller in no tenant). `owns_node` says whether a
    node of that name is the caller's (asked only for a node Lease read). `owner` says whether
    the caller owns a tenant (asked only for a namespace create or delete: self-service); other
    members' writes pass through as before.
    """
    if filters is None:
        return plan_unfiltered(info)
    if not info.is_resource:
        return PassThrough()
    if is_whoami(info.api_group, info.resource, info.verb):
        return WhoAmI()
    if is_node_lease_get(info) and owns_node(info.name):
        return ReadNodeLease()
    if is_review(info.api_group, info.resource, info.verb):
        return AmendReview()
    gr = GroupResource(info.api_group, info.resource)
    if info.subresource:
        return PassThrough()
    if gr == NAMESPACES and info.verb in ("create", "delete") and owner():
        if info.verb == "create" and not info.name:
            return CreateNamespace()
        if info.verb == "delete" and info.name:
            return DeleteNamespace()
    if not filters(gr):
        cluster_wide = info.verb == "list" and not info.namespace
        return ListAcrossNamespaces() if cluster_wide else PassThrough()
    if info.verb in FILTERED_VERBS:
        # Namespaced reads of a filtered resource name ("list PVs in ns x") do not exist for
        # cluster-scoped kinds; a namespace in the path of one is the API server's 404 to give.
        return Filter(gr) if not _namespaced_path(info) else PassThrough()
    return PassThrough()


def plan_unfiltered(info: RequestInfo) -> PassThrough | WhoAmI:
    """Decide for a caller nothing is filtered for (the admin listener, or a caller in no
    tenant): the proxy answers `kubectl auth whoami`, everything else passes through."""
    if info.is_resource and is_whoami(info.api_group, info.resource, info.verb):
        return WhoAmI()
    return PassThrough()


def _namespaced_path(info: RequestInfo) -> bool:
    # /api/v1/namespaces/x is the namespace itself, not a namespaced request.
    return bool(info.namespace) and info.resource != "namespaces"


def is_node_lease_get(info: RequestInfo) -> bool:
    """A get of one Lease in kube-node-lease: a node's heartbeat, named after the node."""
    return (
        info.verb == "get"
        and GroupResource(info.api_group, info.resource) == NODE_LEASES
        and info.namespace == NODE_LEASE_NAMESPACE
        and bool(info.name)
        and not info.subresource
    )
