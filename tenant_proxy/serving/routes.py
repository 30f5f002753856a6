"""From a caller's Plan to the executor of its arm, for each listener.

Complete by construction: the tenant listener's executors are one record with a field per
Plan arm (none optional: a type checker and `TenantExecutors.__post_init__` refuse a missing
one), and each `match` ends in `assert_never`, so a Plan arm without its executor is a type
error, not a request that falls through to being passed on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import assert_never

from aiohttp import web

from tenant_proxy.identity import Identity
from tenant_proxy.informers.index import TenancyIndex
from tenant_proxy.kube.resources import NODES
from tenant_proxy.observability.request_log import RequestLog
from tenant_proxy.plan import (
    AmendReview,
    CreateNamespace,
    DeleteNamespace,
    Deny,
    Filter,
    ListAcrossNamespaces,
    PassThrough,
    ReadNodeLease,
    WhoAmI,
    plan_request,
    plan_unfiltered,
)
from tenant_proxy.serving.across_namespaces import AcrossNamespaces
from tenant_proxy.serving.caller import Call
from tenant_proxy.serving.filtered import FilteredReads
from tenant_proxy.serving.forward import Forward
from tenant_proxy.serving.namespace_requests import NamespaceRequests
from tenant_proxy.serving.node_lease import NodeLeases
from tenant_proxy.serving.reviews import ReviewAmendment
from tenant_proxy.serving.whoami import SelfReview
from tenant_proxy.tenancy.model import TenantView


class UnfilteredRoutes:
    """The admin listener, and tenant-listener callers in no tenant: nothing is filtered, the
    cluster's RBAC decides everything (but `kubectl auth whoami`, which the proxy answers)."""

    def __init__(self, forward: Forward, whoami: SelfReview) -> None:
        self._forward, self._whoami = forward, whoami

    async def serve(
        self, request: web.Request, call: Call, entry: RequestLog
    ) -> web.StreamResponse:
        plan = plan_unfiltered(call.info)
        match plan:
            case WhoAmI():
                return await self._whoami.serve(request, call)
            case PassThrough():
                return await self._forward.serve(request, call)
            case _:
                assert_never(plan)


# The executor field serving each arm of a tenant's Plan (Deny needs none: the proxy answers it).
ARMS: dict[type, str] = {
    PassThrough: "forward",
    WhoAmI: "whoami",
    Filter: "filtered",
    ListAcrossNamespaces: "across",
    AmendReview: "reviews",
    ReadNodeLease: "node_lease",
    CreateNamespace: "namespaces",
    DeleteNamespace: "namespaces",
}


@dataclass(frozen=True)
class TenantExecutors:
    """One executor per arm of a tenant's Plan (Deny needs none: the proxy answers it)."""

    forward: Forward  # PassThrough (and DeleteNamespace of a namespace not owned by label)
    whoami: SelfReview  # WhoAmI
    filtered: FilteredReads  # Filter
    across: AcrossNamespaces  # ListAcrossNamespaces
    reviews: ReviewAmendment  # AmendReview
    node_lease: NodeLeases  # ReadNodeLease
    namespaces: NamespaceRequests  # CreateNamespace, DeleteNamespace

    def __post_init__(self) -> None:
        # The start-up check behind the type checker's: a record built from untyped code
        # (or with a None slipped in) fails here, not on the first request of that arm.
        missing = {f.name for f in fields(self) if getattr(self, f.name) is None}
        if missing:
            arms = sorted(arm.__name__ for arm, name in ARMS.items() if name in missing)
            raise ValueError(f"the tenant listener has no executor for {', '.join(arms)}")


class TenantRoutes:
    """The tenant listener: the caller's tenancy view, its Plan, the executor of the arm."""

    def __init__(
        self, tenancy: TenancyIndex, executors: TenantExecutors, sync_timeout: float
    ) -> None:
        self._tenancy, self._x, self._sync_timeout = tenancy, executors, sync_timeout
        self._unfiltered = UnfilteredRoutes(executors.forward, executors.whoami)

    async def serve(
        self, request: web.Request, call: Call, entry: RequestLog
    ) -> web.StreamResponse:
        view = await self._view(call.identity)
        if view is None:
            return await self._unfiltered.serve(request, call, entry)
        entry.tenants = ",".join(sorted(view.tenants))
        x, identity, info = self._x, call.identity, call.info
        plan = plan_request(
            info, view.filters, owned_node(self._tenancy, view), _owner(x.namespaces, identity)
        )
        match plan:
            case Deny(error):
                raise error
            case WhoAmI():
                return await x.whoami.serve(request, call)
            case PassThrough():
                return await x.forward.serve(request, call)
            case Filter(gr):
                entry.filtered = True
                response, entry.dropped = await x.filtered.serve(request, info, gr, view, identity)
                return response
            case ListAcrossNamespaces():
                return await x.across.serve(request, call, view)
            case AmendReview():
                return await x.reviews.serve(request, call, view)
            case ReadNodeLease():
                return await x.node_lease.serve(request, info)
            case CreateNamespace():
                return await x.namespaces.create(request, info, identity)
            case DeleteNamespace():
                answer = await x.namespaces.delete(request, info, identity, view)
                return answer if answer is not None else await x.forward.serve(request, call)
            case _:
                assert_never(plan)

    async def _view(self, identity: Identity) -> TenantView | None:
        """The caller's tenancy view, once the index has synced (bounded wait, then 503):
        a view from a half-synced index would pass a member through, or filter wrongly."""
        tenancy = self._tenancy
        if not tenancy.synced and not await tenancy.wait_synced(self._sync_timeout):
            raise tenancy.not_synced_error()
        return tenancy.snapshot().view_for(identity)


def owned_node(tenancy: TenancyIndex, view: TenantView) -> Callable[[str], bool]:
    """Whether the index says the view's tenants own a node of that name."""
    return lambda name: name in tenancy.owned(NODES, view)


def _owner(namespaces: NamespaceRequests, identity: Identity) -> Callable[[], bool]:
    return lambda: namespaces.is_owner(identity)
