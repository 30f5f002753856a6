"""Tenants, who belongs to them, and what one caller may see (a TenantView): the union of its
tenants' rules (`rules`) as Criteria, which `owns()` applies to an object.

Pure: no I/O. Namespace ownership comes in as a mapping computed by the index from admin-owned
sources; nothing here reads an object a tenant could write to decide who belongs to a tenant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tenant_proxy.kube.resources import NAMESPACES, NODE_METRICS, NODES, GroupResource
from tenant_proxy.tenancy.ownership import Owns
from tenant_proxy.tenancy.resource_table import BUILTIN_RULE_KINDS
from tenant_proxy.tenancy.rules import Criteria, GenericRule, NamespaceRule, NodeMetricsRule, Rule

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


# --- tenants ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Members:
    """Who belongs to a tenant. Service accounts by full user name `system:serviceaccount:ns:n`."""

    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    service_accounts: frozenset[str] = frozenset()
    all_service_accounts_of_own_namespaces: bool = False


@dataclass(frozen=True)
class NamespaceOptions:
    """Namespace self-service: which names the tenant's owners may create, how many namespaces
    the tenant may hold, and what the owners get in a namespace they create.

    `label_key` is the label the index reads this tenant's namespaces by (ours, or Capsule's
    for a Capsule tenant): a created namespace carries it. With neither `prefix` nor `regex`,
    names must start with `<tenant>-`.
    """

    label_key: str
    prefix: str = ""
    regex: str = ""
    quota: int | None = None
    owner_role: str = "admin"


@dataclass(frozen=True)
class Tenant:
    """One tenant. Its namespaces: `namespaces` (explicit) plus those the index assigns to it.

    `namespace_selector_value` is the label value (key configured on the index) that marks a
    namespace as this tenant's; empty means the tenant's name. The namespaces resource is always
    filtered by NamespaceRule, and a nodes rule brings nodes.metrics.k8s.io with it
    (NodeMetricsRule), unless `rules` says otherwise. `owners` (members too) may create and
    delete its namespaces through the proxy, as `namespace_options` allow.
    """

    name: str
    members: Members = field(default_factory=Members)
    namespace_selector_value: str = ""
    namespaces: frozenset[str] = frozenset()
    rules: Mapping[GroupResource, Rule] = field(default_factory=dict)
    owners: Members = field(default_factory=Members)
    namespace_options: NamespaceOptions | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a tenant needs a name")
        for gr, rule in self.rules.items():
            kind = BUILTIN_RULE_KINDS.get(gr)
            if kind is not None and not isinstance(rule, (kind, GenericRule)):
                raise ValueError(f"{gr} takes a {kind.__name__} or GenericRule, not {rule!r}")

    @property
    def label_value(self) -> str:
        return self.namespace_selector_value or self.name

    @property
    def namespace_key(self) -> tuple[str, frozenset[str]]:
        """What its namespaces follow from (label value, explicit ones): tenants of one name
        from two sources differ here, and must not share or overwrite each other's."""
        return self.label_value, self.namespaces

    def all_rules(self) -> Mapping[GroupResource, Rule]:
        rules: dict[GroupResource, Rule] = {NAMESPACES: NamespaceRule(), **self.rules}
        if NODES in self.rules:
            rules.setdefault(NODE_METRICS, NodeMetricsRule(self.rules[NODES]))
        return rules


class Caller(Protocol):
    """What membership needs of an identity (auth's Identity has these)."""

    @property
    def user(self) -> str: ...

    @property
    def groups(self) -> tuple[str, ...]: ...


AUTHENTICATED = "system:authenticated"
ANONYMOUS = "system:anonymous"


def caller_groups(caller: Caller) -> tuple[str, ...]:
    """The caller's groups as kube-apiserver's authenticators leave them: every authenticated
    caller is in `system:authenticated` too, whatever its method (certificate, OIDC, token),
    so a tenant (or a RoleBinding) naming that group means everyone, as RBAC reads it."""
    groups = caller.groups
    if caller.user == ANONYMOUS or AUTHENTICATED in groups:
        return groups
    return (*groups, AUTHENTICATED)


def is_member(caller: Caller, tenant: Tenant, own_namespaces: frozenset[str]) -> bool:
    members = tenant.members
    if caller.user in members.users or caller.user in members.service_accounts:
        return True
    if is_owner(caller, tenant):
        return True
    if not members.groups.isdisjoint(caller_groups(caller)):
        return True
    if members.all_service_accounts_of_own_namespaces:
        return service_account_namespace(caller.user) in own_namespaces
    return False


def is_owner(caller: Caller, tenant: Tenant) -> bool:
    """Whether `caller` is one of the tenant's owners (by user, ServiceAccount or group)."""
    owners = tenant.owners
    if caller.user in owners.users or caller.user in owners.service_accounts:
        return True
    return not owners.groups.isdisjoint(caller_groups(caller))


def service_account_namespace(user: str) -> str | None:
    """The namespace of a `system:serviceaccount:<ns>:<name>` user, else None."""
    if not user.startswith(SERVICE_ACCOUNT_PREFIX):
        return None
    namespace, sep, name = user[len(SERVICE_ACCOUNT_PREFIX) :].partition(":")
    return namespace if sep and namespace and name and ":" not in name else None


# --- the caller's view ------------------------------------------------------------------------


@dataclass(frozen=True)
class TenantView:
    """What one caller may see: the union over every tenant it belongs to."""

    tenants: frozenset[str]
    namespaces: frozenset[str]
    rules: Mapping[GroupResource, tuple[Criteria, ...]]
    _owns: dict[GroupResource, Owns] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    derived: dict[Any, Any] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    """What other layers derive from the view, kept for its life and shared by every caller
    of it (a watch's Side of each resource)."""

    def filters(self, gr: GroupResource) -> bool:
        """Whether reads of `gr` are filtered for this caller (else: impersonated pass-through)."""
        return gr in self.rules

    def needs_full_object(self, gr: GroupResource) -> bool:
        """Whether judging `gr` reads fields beyond metadata (ask upstream for whole objects).

        A field rule counts even while its set of values is empty: a watch decides its shape
        once, and a tenant that owns no namespace yet must still be able to judge the PVs
        bound into one it gains later.
        """
        return any(c.field_path for c in self.rules.get(gr, ()))

    def owns(self, gr: GroupResource) -> Owns:
        """`owns` for `gr`, compiled on first use (views live as long as a tenancy generation)."""
        compiled = self._owns.get(gr)
        if compiled is None:
            compiled = self._owns[gr] = Owns(self.rules.get(gr, ()))
        return compiled


TenantNamespaces = Mapping[tuple[str, frozenset[str]], frozenset[str]]
"""Each tenant's namespaces, by `Tenant.namespace_key`."""


def tenant_namespaces(
    tenants: Iterable[Tenant], namespace_owner: Mapping[str, str]
) -> dict[tuple[str, frozenset[str]], frozenset[str]]:
    """Each tenant's namespaces: explicit ones plus those labelled with its label value
    (`namespace_owner`: namespace -> the tenant label value it carries)."""
    labelled: dict[str, set[str]] = {}
    for namespace, value in namespace_owner.items():
        labelled.setdefault(value, set()).add(namespace)
    return {
        t.namespace_key: t.namespaces | frozenset(labelled.get(t.label_value, ())) for t in tenants
    }


def view_for(
    caller: Caller,
    tenants: Iterable[Tenant],
    namespace_owner: Mapping[str, str],
    rolebinding_namespaces: frozenset[str] = frozenset(),
) -> TenantView | None:
    """The caller's view, or None when it belongs to no tenant (it then passes through).

    `rolebinding_namespaces` (optional, as capsule-proxy does) are namespaces where a RoleBinding
    names the caller; they widen the namespaces the caller sees, not other resources.
    """
    tenant_list = list(tenants)
    own = tenant_namespaces(tenant_list, namespace_owner)
    return view_of(memberships(caller, tenant_list, own), own, rolebinding_namespaces)


def memberships(caller: Caller, tenants: Iterable[Tenant], own: TenantNamespaces) -> list[Tenant]:
    """The tenants `caller` belongs to (`own`: each tenant's namespaces)."""
    return [t for t in tenants if is_member(caller, t, own[t.namespace_key])]


def view_of(
    mine: Iterable[Tenant],
    own: TenantNamespaces,
    rolebinding_namespaces: frozenset[str] = frozenset(),
) -> TenantView | None:
    """The union view of the tenants `mine`; callers with the same memberships share it."""
    mine = list(mine)
    if not mine:
        return None
    rules: dict[GroupResource, list[Criteria]] = {}
    for tenant in mine:
        for gr, rule in tenant.all_rules().items():
            criteria = rule.criteria(tenant.label_value, own[tenant.namespace_key])
            rules.setdefault(gr, []).append(criteria)
    if rolebinding_namespaces:
        rules[NAMESPACES].append(Criteria(names=rolebinding_namespaces))
    namespaces = frozenset().union(*(own[t.namespace_key] for t in mine)) | rolebinding_namespaces
    return TenantView(
        tenants=frozenset(t.name for t in mine),
        namespaces=namespaces,
        rules={gr: tuple(c) for gr, c in rules.items()},
    )


# --- ownership --------------------------------------------------------------------------------


def owns(view: TenantView, gr: GroupResource, obj: Mapping[str, Any]) -> bool:
    """Whether `obj` (a full object or PartialObjectMetadata) is the caller's to see.

    Fails closed: unreadable metadata, a resource without a rule, or a field that is not a
    string all mean False.
    """
    return view.owns(gr)(obj)
