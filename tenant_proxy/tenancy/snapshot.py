"""Tenancy as it stood at one generation: an immutable value a watch can judge with later.

The index changes as informers report; a watch resumed from a resourceVersion must judge what
its client held with the tenancy of that time, not today's. So each generation's inputs (the
tenants, each tenant's namespaces, the RoleBinding grants) are frozen into one snapshot, and
views are computed from it (memoised: callers with the same memberships share one). Pure.

With 10,000 watches open, every generation asks every watch's caller for its view again:
finding a caller's tenants by testing each tenant (O(tenants) per caller) was most of a
tenancy change's fan-out. `Admission` finds them by looking up the caller's user name and
groups instead; it depends on the tenants alone, so generations with the same tenants share one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tenant_proxy.tenancy.grants import Subject, granted_namespaces
from tenant_proxy.tenancy.model import (
    Caller,
    Tenant,
    TenantNamespaces,
    TenantView,
    caller_groups,
    service_account_namespace,
    view_of,
)

FrozenGrants = Mapping[Subject, frozenset[str]]
"""Each subject's granted namespaces (`rolebinding_namespaces`)."""

_ViewKey = tuple[frozenset[int], frozenset[str]]
_NONE: frozenset[int] = frozenset()


class Admission:
    """Which of `tenants` admit a caller (`model.is_member`), by its user name and groups:
    positions in `tenants`, found by lookups rather than by testing every tenant."""

    def __init__(self, tenants: Sequence[Tenant]) -> None:
        self.tenants = tuple(tenants)
        by_user: dict[str, set[int]] = {}
        by_group: dict[str, set[int]] = {}
        for i, tenant in enumerate(self.tenants):
            # Owners are members too (`is_member` asks `is_owner`).
            for who in (tenant.members, tenant.owners):
                for user in who.users | who.service_accounts:
                    by_user.setdefault(user, set()).add(i)
                for group in who.groups:
                    by_group.setdefault(group, set()).add(i)
        self._by_user = {k: frozenset(v) for k, v in by_user.items()}
        self._by_group = {k: frozenset(v) for k, v in by_group.items()}
        # These admit a ServiceAccount by where it lives, which each generation's namespaces say.
        self._own_accounts = tuple(
            i
            for i, t in enumerate(self.tenants)
            if t.members.all_service_accounts_of_own_namespaces
        )

    def same_tenants(self, tenants: Sequence[Tenant]) -> bool:
        """Whether this admits for exactly `tenants` (the very objects, in this order)."""
        return len(tenants) == len(self.tenants) and all(
            a is b for a, b in zip(tenants, self.tenants, strict=True)
        )

    def positions(self, caller: Caller, own: TenantNamespaces) -> frozenset[int]:
        """The positions of the tenants `caller` belongs to (`own`: each tenant's namespaces)."""
        found = self._by_user.get(caller.user, _NONE)
        for group in caller_groups(caller):
            more = self._by_group.get(group)
            if more is not None:
                found = more if not found else found | more
        if self._own_accounts:
            namespace = service_account_namespace(caller.user)
            if namespace is not None:
                found = found | {
                    i for i in self._own_accounts if namespace in own[self.tenants[i].namespace_key]
                }
        return found


@dataclass(frozen=True, eq=False)
class TenancySnapshot:
    """Who the tenants are and which namespaces are theirs, at `generation`.

    `grants` is None when RoleBindings do not widen views (`rolebinding_namespaces` off).
    """

    generation: int
    tenants: tuple[Tenant, ...]
    own: TenantNamespaces
    grants: FrozenGrants | None = None
    admission: Admission | None = None
    """Who the tenants admit; one made for these very tenants by an earlier generation may be
    passed on (else made here)."""
    _views: dict[_ViewKey, TenantView | None] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.admission is None or not self.admission.same_tenants(self.tenants):
            object.__setattr__(self, "admission", Admission(self.tenants))

    def view_for(self, caller: Caller) -> TenantView | None:
        """The caller's view at this generation, or None when it belongs to no tenant."""
        assert self.admission is not None
        # Keyed by position, not name: the config, the CR and Capsule may each hold a "team-a".
        positions = self.admission.positions(caller, self.own)
        key = (positions, self.bound_namespaces(caller))
        if key not in self._views:
            mine = [self.tenants[i] for i in sorted(positions)]
            self._views[key] = view_of(mine, self.own, key[1])
        return self._views[key]

    def bound_namespaces(self, caller: Caller) -> frozenset[str]:
        """Namespaces a RoleBinding opens to the caller's user or one of its groups."""
        if not self.grants:
            return frozenset()
        return granted_namespaces(self.grants, caller.user, caller_groups(caller))
