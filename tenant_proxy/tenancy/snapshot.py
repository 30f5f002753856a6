"""Tenancy as it stood at one generation: an immutable value a watch can judge with later.

The index changes as informers report; a watch resumed from a resourceVersion must judge what
its client held with the tenancy of that time, not today's. So each generation's inputs (the
tenants, each tenant's namespaces, the RoleBinding grants) are frozen into one snapshot, and
views are computed from it (memoised: callers with the same memberships share one). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tenant_proxy.tenancy.grants import Subject, granted_namespaces
from tenant_proxy.tenancy.model import (
    Caller,
    Tenant,
    TenantNamespaces,
    TenantView,
    memberships,
    view_of,
)

FrozenGrants = Mapping[Subject, frozenset[str]]
"""Each subject's granted namespaces (`rolebinding_namespaces`)."""

_ViewKey = tuple[frozenset[int], frozenset[str]]


@dataclass(frozen=True, eq=False)
class TenancySnapshot:
    """Who the tenants are and which namespaces are theirs, at `generation`.

    `grants` is None when RoleBindings do not widen views (`rolebinding_namespaces` off).
    """

    generation: int
    tenants: tuple[Tenant, ...]
    own: TenantNamespaces
    grants: FrozenGrants | None = None
    _views: dict[_ViewKey, TenantView | None] = field(default_factory=dict, init=False, repr=False)

    def view_for(self, caller: Caller) -> TenantView | None:
        """The caller's view at this generation, or None when it belongs to no tenant."""
        mine = memberships(caller, self.tenants, self.own)
        # Keyed by position, not name: the config, the CR and Capsule may each hold a "team-a".
        member_ids = {id(t) for t in mine}
        positions = frozenset(i for i, t in enumerate(self.tenants) if id(t) in member_ids)
        key = (positions, self.bound_namespaces(caller))
        if key not in self._views:
            self._views[key] = view_of(mine, self.own, key[1])
        return self._views[key]

    def bound_namespaces(self, caller: Caller) -> frozenset[str]:
        """Namespaces a RoleBinding opens to the caller's user or one of its groups."""
        if not self.grants:
            return frozenset()
        return granted_namespaces(self.grants, caller.user, caller.groups)
