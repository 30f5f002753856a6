"""Tenants and their rules as data, and what one caller may see (a TenantView).

Every rule, built-in or generic, compiles to the same `Criteria` value: an object is the tenant's
when ANY of its alternatives holds (labels match a selector, the name is listed or matches a
pattern, or a field holds one of a set of strings). `owns()` and pushdown both read only Criteria,
so the built-in rules and the generic rule share one code path.

Pure: no I/O. Namespace ownership comes in as a mapping computed by the index from admin-owned
sources; nothing here reads an object a tenant could write to decide who belongs to a tenant.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from tenant_proxy.kube.labels import Op, Requirement, Selector
from tenant_proxy.kube.resources import (
    CRDS,
    NAMESPACES,
    NODE_METRICS,
    NODES,
    PERSISTENT_VOLUMES,
    GroupResource,
)

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


CLASS_RESOURCES = frozenset(
    {
        GroupResource("storage.k8s.io", "storageclasses"),
        GroupResource("networking.k8s.io", "ingressclasses"),
        GroupResource("scheduling.k8s.io", "priorityclasses"),
        GroupResource("node.k8s.io", "runtimeclasses"),
        GroupResource("gateway.networking.k8s.io", "gatewayclasses"),
        GroupResource("snapshot.storage.k8s.io", "volumesnapshotclasses"),
    }
)


@dataclass(frozen=True)
class Criteria:
    """An object matches when any alternative holds. All-empty criteria match nothing."""

    selector: Selector | None = None
    names: frozenset[str] = frozenset()
    name_pattern: re.Pattern[str] | None = None
    field_path: tuple[str, ...] = ()
    field_values: frozenset[str] = frozenset()

    def matches_nothing(self) -> bool:
        no_field = not self.field_path or not self.field_values
        return self.selector is None and not self.names and self.name_pattern is None and no_field

    def selector_only(self) -> bool:
        """True when the selector alone decides (so it can be pushed down to the API server)."""
        return self.selector is not None and self._no_name_or_field()

    def names_only(self) -> bool:
        return self.selector is None and self._no_name_or_field(names=False)

    def _no_name_or_field(self, names: bool = True) -> bool:
        no_field = not self.field_path or not self.field_values
        return (not names or not self.names) and self.name_pattern is None and no_field


# --- rules ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NamespaceRule:
    """namespaces: the tenant's own namespaces, by name."""

    def criteria(self, tenant_label: str, namespaces: frozenset[str]) -> Criteria:
        return Criteria(names=namespaces)


@dataclass(frozen=True)
class NodeRule:
    """nodes: the tenant's nodeSelector. An empty selector matches every node, as in kube."""

    selector: Selector

    def criteria(self, tenant_label: str, namespaces: frozenset[str]) -> Criteria:
        return Criteria(selector=self.selector)


@dataclass(frozen=True)
class ClaimNamespaceRule:
    """persistentvolumes: bound into one of the tenant's namespaces, or labelled for the tenant.

    `label_key` set: a PV labelled `<label_key>=<the tenant's label value>` is the tenant's too
    (the value that marks its namespaces: its name unless configured otherwise).
    """

    field_path: str = "spec.claimRef.namespace"
    label_key: str | None = None

    def criteria(self, tenant_label: str, namespaces: frozenset[str]) -> Criteria:
        selector = None
        if self.label_key is not None:
            selector = Selector((Requirement(self.label_key, Op.EQUALS, (tenant_label,)),))
        return Criteria(
            selector=selector, field_path=_path(self.field_path), field_values=namespaces
        )


@dataclass(frozen=True)
class ClassRule:
    """storage/ingress/priority/runtime/gateway/volumesnapshot classes.

    Allowed by name, by `regex` (matched against the WHOLE name: Capsule's Go MatchString finds
    a match anywhere, which lets `gold` admit `not-gold-at-all`; a full match fails closed), or
    by label selector.
    """

    names: frozenset[str] = frozenset()
    regex: str | None = None
    selector: Selector | None = None

    def __post_init__(self) -> None:
        # Refuse a bad pattern when the config is loaded, not on every request.
        if self.regex:
            try:
                re.compile(self.regex)
            except re.error as err:
                raise ValueError(f"invalid class name regex {self.regex!r}: {err}") from None

    def criteria(self, tenant_label: str, namespaces: frozenset[str]) -> Criteria:
        pattern = re.compile(self.regex) if self.regex else None
        return Criteria(selector=self.selector, names=self.names, name_pattern=pattern)


@dataclass(frozen=True)
class ApiGroupRule:
    """customresourcedefinitions: those whose `spec.group` is on the allowlist."""

    groups: frozenset[str]

    def criteria(self, tenant_label: str, namespaces: frozenset[str]) -> Criteria:
        return Criteria(field_path=("spec", "group"), field_values=self.groups)


@dataclass(frozen=True)
class GenericRule:
    """Any cluster-scoped resource: by selector, by name, or a field naming a tenant namespace."""

    selector: Selector | None = None
    names: frozenset[str] = frozenset()
    field_path: str | None = None

    def criteria(self, tenant_label: str, namespaces: frozenset[str]) -> Criteria:
        path = _path(self.field_path) if self.field_path else ()
        return Criteria(
            selector=self.selector, names=self.names, field_path=path, field_values=namespaces
        )


@dataclass(frozen=True)
class NodeMetricsRule:
    """nodes.metrics.k8s.io, derived from the tenant's nodes rule: its nodes' NodeMetrics.

    metrics-server names each NodeMetrics after its node and copies the node's labels onto it,
    so the nodes rule's selector and names judge it as they judge the node (and a selector still
    pushes down: metrics-server filters by labels). Node fields (spec, status) are not on a
    NodeMetrics: a field alternative is dropped, granting no metrics rather than guessing.
    """

    nodes: Rule

    def criteria(self, tenant_label: str, namespaces: frozenset[str]) -> Criteria:
        nodes = self.nodes.criteria(tenant_label, namespaces)
        return replace(nodes, field_path=(), field_values=frozenset())


Rule = (
    NamespaceRule
    | NodeRule
    | ClaimNamespaceRule
    | ClassRule
    | ApiGroupRule
    | GenericRule
    | NodeMetricsRule
)

BUILTIN_RULE_KINDS: dict[GroupResource, type[Rule]] = {
    NAMESPACES: NamespaceRule,
    NODES: NodeRule,
    PERSISTENT_VOLUMES: ClaimNamespaceRule,
    CRDS: ApiGroupRule,
    **{gr: ClassRule for gr in CLASS_RESOURCES},
}
"""The rule type each built-in resource takes; GenericRule is accepted for any resource."""


def _path(dotted: str) -> tuple[str, ...]:
    parts = tuple(dotted.split("."))
    if not all(parts):
        raise ValueError(f"invalid field path {dotted!r}")
    return parts


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


def is_member(caller: Caller, tenant: Tenant, own_namespaces: frozenset[str]) -> bool:
    members = tenant.members
    if caller.user in members.users or caller.user in members.service_accounts:
        return True
    if is_owner(caller, tenant):
        return True
    if not members.groups.isdisjoint(caller.groups):
        return True
    if members.all_service_accounts_of_own_namespaces:
        return service_account_namespace(caller.user) in own_namespaces
    return False


def is_owner(caller: Caller, tenant: Tenant) -> bool:
    """Whether `caller` is one of the tenant's owners (by user, ServiceAccount or group)."""
    owners = tenant.owners
    if caller.user in owners.users or caller.user in owners.service_accounts:
        return True
    return not owners.groups.isdisjoint(caller.groups)


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
    _judges: dict[GroupResource, Judge] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

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

    def judge(self, gr: GroupResource) -> Judge:
        """`owns` for `gr`, compiled on first use (views live as long as a tenancy generation)."""
        judge = self._judges.get(gr)
        if judge is None:
            judge = self._judges[gr] = Judge(self.rules.get(gr, ()))
        return judge


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
    return view.judge(gr)(obj)


class Judge:
    """`owns` for one view and resource, compiled once: every criterion of the view merged by
    kind (one name set, one value set per field path) and tried cheapest first. It runs once per
    item of a tenant's list, tens of thousands of times per request."""

    __slots__ = ("_fields", "_names", "_patterns", "_ruled", "_selectors")

    def __init__(self, criteria: tuple[Criteria, ...]) -> None:
        self._ruled = bool(criteria)
        self._names = frozenset().union(*(c.names for c in criteria))
        by_path: dict[tuple[str, ...], set[str]] = {}
        for c in criteria:
            if c.field_path and c.field_values:
                by_path.setdefault(c.field_path, set()).update(c.field_values)
        self._fields = tuple((path, frozenset(values)) for path, values in by_path.items())
        self._selectors = tuple(label_test(c.selector) for c in criteria if c.selector is not None)
        self._patterns = tuple(c.name_pattern for c in criteria if c.name_pattern is not None)

    @property
    def fields(self) -> frozenset[tuple[str, ...]]:
        """The fields a decision rests on: judged on an object holding only these, the answer
        is the full object's, or True where only the full object can tell (labels that are not
        strings, when no selector reads them)."""
        paths = {("metadata", "name"), *(path for path, _ in self._fields)}
        if self._selectors:
            paths.add(("metadata", "labels"))
        return frozenset(paths)

    def __call__(self, obj: Mapping[str, Any]) -> bool:
        # Objects are decoded JSON: only real dicts count (a `dict` check is several times
        # cheaper than an ABC check).
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        if not self._ruled or not isinstance(meta, dict):
            return False
        name = meta.get("name")
        labels = _labels(meta.get("labels"))
        if not isinstance(name, str) or not name or labels is None:
            return False
        if name in self._names:
            return True
        for path, values in self._fields:
            value: object = obj
            for step in path:
                value = value.get(step) if isinstance(value, dict) else None
            if isinstance(value, str) and value in values:
                return True
        # Tested before use: building a generator costs more than most checks here.
        if self._selectors and any(matches(labels) for matches in self._selectors):
            return True
        return bool(self._patterns) and any(p.fullmatch(name) for p in self._patterns)


def label_test(selector: Selector) -> Callable[[Mapping[str, str]], bool]:
    """`selector.matches`, or for the common all-equality selector (a tenant label) the same
    test as a few dict lookups: it runs once per object of a tenant's list."""
    exact = (Op.EQUALS, Op.DOUBLE_EQUALS, Op.IN)
    if not selector.requirements or any(r.op not in exact for r in selector.requirements):
        return selector.matches
    wanted = tuple((r.key, frozenset(r.values)) for r in selector.requirements)
    if len(wanted) == 1:
        ((key, values),) = wanted
        return lambda labels: labels.get(key) in values
    return lambda labels: all(labels.get(key) in values for key, values in wanted)


def _labels(value: object) -> Mapping[str, str] | None:
    if value is None:
        return {}
    if not isinstance(value, dict):
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return None
    return value


def field_value(obj: Mapping[str, Any], path: tuple[str, ...]) -> object:
    """The value at a dotted path, or None when any step is missing or not an object."""
    current: object = obj
    for step in path:
        if not isinstance(current, dict):
            return None
        current = current.get(step)
    return current
