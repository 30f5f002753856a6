"""What a tenant should see, written from the issue's rules alone (no tenant_proxy import).

The differential test compares the proxy's answers with this module's. Everything here is pure:
a `World` (the cluster-scoped objects, the tenants of all three sources and the RoleBindings the
emulator holds) and a caller in, the names the caller may see out. Each tenancy source is read
in its own shape (the config file's snake_case, the Tenant CR's camelCase, Capsule's owners and
allowed lists), and label selectors are evaluated here by their Kubernetes meaning, so a bug in
the proxy's translation or selector code cannot hide behind the same bug in the oracle.

The rules, as the README and the issue state them:
- a caller belongs to every tenant that names it: as a user, through one of its groups, as a
  ServiceAccount (`ns:name` or `system:serviceaccount:ns:name`; Capsule owners of kind User,
  Group, ServiceAccount), or, when the tenant says so, as any ServiceAccount of its namespaces;
  it sees the union over its tenants, and each tenant's rules are its own (two tenants of the
  same name from two sources share nothing but the name);
- a tenant's namespaces: those it lists, and those whose tenant label carries its label value
  (its name, or a Tenant CR's `namespaceLabelValue`); in Capsule mode a namespace carrying
  Capsule's `capsule.clastix.io/tenant` label belongs to the tenant that label names, whatever
  `tenant-proxy.io/tenant` says;
- with RoleBinding namespaces on, a tenant member also sees the namespaces where a RoleBinding
  names it, one of its groups, or it as a ServiceAccount (a subject without a namespace means
  one of the binding's own namespace, as RBAC reads it); only namespaces widen, nothing else;
- PVs: bound into one of the tenant's namespaces, or labelled for it (Capsule tenants: with
  Capsule's label), unless a generic rule for PVs replaces that;
- nodes: by the tenant's node selector (a Capsule tenant's map of labels, when not empty);
- classes: by names, a full-match regex, or a label selector (Capsule: allowed, allowedRegex
  and an inline selector); CRDs: by API-group allowlist; any other cluster-scoped resource by a
  generic rule: label selector, names, or a field holding one of the tenant's namespaces;
- a resource none of the caller's tenants has a rule for is not filtered: the cluster's RBAC
  answers it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TENANT_LABEL = "tenant-proxy.io/tenant"
CAPSULE_LABEL = "capsule.clastix.io/tenant"
SA_PREFIX = "system:serviceaccount:"

Labels = Mapping[str, str]
Spec = Mapping[str, Any]

NAMESPACES = "namespaces"
NODES = "nodes"
PVS = "persistentvolumes"
STORAGE_CLASSES = "storageclasses"
INGRESS_CLASSES = "ingressclasses"
PRIORITY_CLASSES = "priorityclasses"
RUNTIME_CLASSES = "runtimeclasses"
GATEWAY_CLASSES = "gatewayclasses"
SNAPSHOT_CLASSES = "volumesnapshotclasses"
CRDS = "customresourcedefinitions"
WIDGETS = "widgets"
CSI_DRIVERS = "csidrivers"

# The API group of every resource the worlds hold (a generic rule names group and resource).
GROUPS = {
    NAMESPACES: "",
    NODES: "",
    PVS: "",
    STORAGE_CLASSES: "storage.k8s.io",
    INGRESS_CLASSES: "networking.k8s.io",
    PRIORITY_CLASSES: "scheduling.k8s.io",
    RUNTIME_CLASSES: "node.k8s.io",
    GATEWAY_CLASSES: "gateway.networking.k8s.io",
    SNAPSHOT_CLASSES: "snapshot.storage.k8s.io",
    CRDS: "apiextensions.k8s.io",
    WIDGETS: "example.com",
    CSI_DRIVERS: "storage.k8s.io",
}

# Class resource -> its key in a Tenant CR spec (the config file's key is the resource).
CLASS_KEYS = {
    STORAGE_CLASSES: "storageClasses",
    INGRESS_CLASSES: "ingressClasses",
    PRIORITY_CLASSES: "priorityClasses",
    RUNTIME_CLASSES: "runtimeClasses",
    GATEWAY_CLASSES: "gatewayClasses",
    SNAPSHOT_CLASSES: "volumeSnapshotClasses",
}

# What Capsule's v1beta2 Tenant can allow, by where it says so.
CAPSULE_CLASS_PATHS = {
    STORAGE_CLASSES: ("storageClasses",),
    PRIORITY_CLASSES: ("priorityClasses",),
    RUNTIME_CLASSES: ("runtimeClasses",),
    INGRESS_CLASSES: ("ingressOptions", "allowedClasses"),
}

CLAIM_PATH = "spec.claimRef.namespace"
GROUP_PATH = "spec.group"


@dataclass(frozen=True)
class Requirement:
    """One label requirement: op is In, NotIn, Exists or DoesNotExist (LabelSelector's words)."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Labels) -> bool:
        has = self.key in labels
        if self.op == "In":
            return has and labels[self.key] in self.values
        if self.op == "NotIn":
            # `k!=v` and `k notin (v)` also select objects without the key, as in Kubernetes.
            return not has or labels[self.key] not in self.values
        if self.op == "Exists":
            return has
        if self.op == "DoesNotExist":
            return not has
        raise ValueError(f"unknown operator {self.op!r}")


def requirements_of(selector: Spec) -> list[Requirement]:
    """A metav1.LabelSelector (matchLabels + matchExpressions) as requirements, ANDed."""
    reqs = [Requirement(k, "In", (v,)) for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        reqs.append(Requirement(expr["key"], expr["operator"], tuple(expr.get("values") or ())))
    return reqs


def selects(requirements: Iterable[Requirement], labels: Labels) -> bool:
    """An empty requirement list selects everything, as an empty LabelSelector does."""
    return all(r.matches(labels) for r in requirements)


@dataclass(frozen=True)
class Caller:
    user: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Obj:
    """A cluster-scoped object as the oracle needs it: labels, and the string fields rules
    may read, by dotted path (a PV's `spec.claimRef.namespace`, a CRD's `spec.group`...)."""

    labels: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, str] = field(default_factory=dict)


def claimed(namespace: str | None, labels: Mapping[str, str] | None = None) -> Obj:
    """A PV, bound to a claim in `namespace` (None: unbound)."""
    fields = {} if namespace is None else {CLAIM_PATH: namespace}
    return Obj(labels=dict(labels or {}), fields=fields)


@dataclass(frozen=True)
class Subject:
    """A RoleBinding subject: kind User, Group or ServiceAccount."""

    kind: str
    name: str
    namespace: str | None = None


@dataclass(frozen=True)
class RoleBinding:
    namespace: str
    subjects: tuple[Subject, ...]


@dataclass(frozen=True)
class World:
    """Everything tenancy depends on.

    objects: resource plural -> name -> object. tenants: Tenant CRs (name -> spec, camelCase);
    capsule: Capsule Tenants (name -> v1beta2 spec); config: the config file's tenants (name ->
    snake_case settings); rolebindings: "namespace/name" -> binding. The proxy under test runs
    with Capsule mode and RoleBinding namespaces on (`capsule_mode`, `rolebinding_namespaces`).
    """

    objects: Mapping[str, Mapping[str, Obj]]
    tenants: Mapping[str, Spec] = field(default_factory=dict)
    capsule: Mapping[str, Spec] = field(default_factory=dict)
    config: Mapping[str, Spec] = field(default_factory=dict)
    rolebindings: Mapping[str, RoleBinding] = field(default_factory=dict)
    capsule_mode: bool = True
    rolebinding_namespaces: bool = True


# --- the three sources, each read in its own shape ---------------------------------------------


@dataclass(frozen=True)
class Tenant:
    """One tenant, from `source` ("config", "cr" or "capsule"), with its spec as written."""

    source: str
    name: str
    spec: Spec


def all_tenants(world: World) -> list[Tenant]:
    return [
        *(Tenant("config", n, s) for n, s in world.config.items()),
        *(Tenant("cr", n, s) for n, s in world.tenants.items()),
        *(Tenant("capsule", n, s) for n, s in world.capsule.items()),
    ]


def label_value(tenant: Tenant) -> str:
    """The tenant label value that marks the tenant's namespaces and PVs: its name, unless a
    Tenant CR says `namespaceLabelValue`."""
    if tenant.source == "cr":
        return str(tenant.spec.get("namespaceLabelValue") or tenant.name)
    return tenant.name


def pv_label_key(tenant: Tenant) -> str:
    return CAPSULE_LABEL if tenant.source == "capsule" else TENANT_LABEL


def explicit_namespaces(tenant: Tenant) -> frozenset[str]:
    if tenant.source == "capsule":
        return frozenset()
    return frozenset(tenant.spec.get("namespaces") or ())


def _full_account(name: str) -> str:
    return name if name.startswith(SA_PREFIX) else SA_PREFIX + name


@dataclass(frozen=True)
class Members:
    users: frozenset[str]
    groups: frozenset[str]
    all_accounts_of_own_namespaces: bool = False


def members(tenant: Tenant) -> Members:
    spec = tenant.spec
    if tenant.source == "capsule":
        owners = spec.get("owners") or ()
        return Members(
            users=frozenset(o["name"] for o in owners if o["kind"] in ("User", "ServiceAccount")),
            groups=frozenset(o["name"] for o in owners if o["kind"] == "Group"),
        )
    m = spec.get("members") or {}
    if tenant.source == "config":
        accounts, every = m.get("serviceaccounts"), m.get("all_serviceaccounts_of_own_namespaces")
    else:
        accounts, every = m.get("serviceAccounts"), m.get("allServiceAccountsOfOwnNamespaces")
    return Members(
        users=frozenset(m.get("users") or ()) | {_full_account(a) for a in accounts or ()},
        groups=frozenset(m.get("groups") or ()),
        all_accounts_of_own_namespaces=bool(every),
    )


def _service_account_namespace(user: str) -> str | None:
    if not user.startswith(SA_PREFIX):
        return None
    parts = user[len(SA_PREFIX) :].split(":")
    return parts[0] if len(parts) == 2 and all(parts) else None


def is_member(caller: Caller, tenant: Tenant, own: frozenset[str]) -> bool:
    m = members(tenant)
    if caller.user in m.users or m.groups & set(caller.groups):
        return True
    return m.all_accounts_of_own_namespaces and _service_account_namespace(caller.user) in own


# --- namespaces --------------------------------------------------------------------------------


def namespace_tenant_label(world: World, labels: Labels) -> str | None:
    """The label value that says whose a namespace is: Capsule's label wins in Capsule mode."""
    if world.capsule_mode and CAPSULE_LABEL in labels:
        return labels[CAPSULE_LABEL]
    return labels.get(TENANT_LABEL)


def tenant_namespaces(world: World, tenant: Tenant) -> frozenset[str]:
    """Listed explicitly (existing or not), or labelled with the tenant's label value."""
    value = label_value(tenant)
    labelled = {
        ns
        for ns, obj in world.objects.get(NAMESPACES, {}).items()
        if namespace_tenant_label(world, obj.labels) == value
    }
    return explicit_namespaces(tenant) | labelled


def bound_namespaces(world: World, caller: Caller) -> frozenset[str]:
    """Namespaces where a RoleBinding names the caller, one of its groups, or it as an SA."""
    if not world.rolebinding_namespaces:
        return frozenset()
    out = set()
    for binding in world.rolebindings.values():
        for s in binding.subjects:
            if (
                (s.kind == "User" and s.name == caller.user)
                or (s.kind == "Group" and s.name in caller.groups)
                or (
                    s.kind == "ServiceAccount"
                    and f"{SA_PREFIX}{s.namespace or binding.namespace}:{s.name}" == caller.user
                )
            ):
                out.add(binding.namespace)
    return frozenset(out)


# --- rules -------------------------------------------------------------------------------------

Judge = Callable[[str, Obj], bool]
"""Whether one object (by name) is a tenant's."""


@dataclass(frozen=True)
class Membership:
    tenant: Tenant
    namespaces: frozenset[str]


def memberships(world: World, caller: Caller) -> list[Membership]:
    out = []
    for tenant in all_tenants(world):
        own = tenant_namespaces(world, tenant)
        if is_member(caller, tenant, own):
            out.append(Membership(tenant, own))
    return out


def _selector_judge(selector: Spec | None) -> Judge:
    if selector is None:
        return lambda _name, _obj: False
    reqs = requirements_of(selector)
    return lambda _name, obj: selects(reqs, obj.labels)


def _any(*judges: Judge) -> Judge:
    return lambda name, obj: any(j(name, obj) for j in judges)


def _named(names: Iterable[str]) -> Judge:
    allowed = frozenset(names)
    return lambda name, _obj: name in allowed


def _full_match(regex: str | None) -> Judge:
    # The whole name must match: "gol" does not admit "gold" (Go's MatchString would).
    if not regex:
        return lambda _name, _obj: False
    pattern = re.compile(regex)
    return lambda name, _obj: pattern.fullmatch(name) is not None


def _field_in(path: str | None, values: frozenset[str]) -> Judge:
    return lambda _name, obj: path is not None and obj.fields.get(path) in values


def _class_rule(rule: Spec) -> Judge:
    """names / regex / selector (config and Tenant CR)."""
    return _any(
        _named(rule.get("names") or ()),
        _full_match(rule.get("regex")),
        _selector_judge(rule.get("selector")),
    )


def _capsule_allowed(rule: Spec) -> Judge:
    """Capsule's allowed list: exact names, allowedRegex, and an inline LabelSelector (no
    selector at all when it has neither matchLabels nor matchExpressions)."""
    inline = rule.get("matchLabels") or rule.get("matchExpressions")
    return _any(
        _named(rule.get("allowed") or ()),
        _full_match(rule.get("allowedRegex")),
        _selector_judge(rule if inline else None),
    )


def _generic_rules(tenant: Tenant) -> list[Spec]:
    if tenant.source == "capsule":
        return []
    return list(tenant.spec.get("resources") or ())


def _generic_for(tenant: Tenant, resource: str) -> Spec | None:
    for rule in _generic_rules(tenant):
        if rule["resource"] == resource and (rule.get("group") or "") == GROUPS[resource]:
            return rule
    return None


def _generic_judge(tenant: Tenant, rule: Spec, own: frozenset[str]) -> Judge:
    path = rule.get("field_path" if tenant.source == "config" else "fieldPath")
    return _any(
        _selector_judge(rule.get("selector")),
        _named(rule.get("names") or ()),
        _field_in(path, own),
    )


def rule(m: Membership, resource: str) -> Judge | None:
    """How tenant `m` judges objects of `resource`; None when it has no rule for it."""
    tenant, spec, own = m.tenant, m.tenant.spec, m.namespaces
    if resource == NAMESPACES:
        return lambda name, _obj: name in own
    generic = _generic_for(tenant, resource)
    if generic is not None:
        return _generic_judge(tenant, generic, own)
    if resource == PVS:
        key, value = pv_label_key(tenant), label_value(tenant)
        return _any(_field_in(CLAIM_PATH, own), lambda _n, obj: obj.labels.get(key) == value)
    if tenant.source == "capsule":
        return _capsule_rule(spec, resource)
    config = tenant.source == "config"
    if resource == NODES:
        selector = spec.get("node_selector" if config else "nodeSelector")
        return None if selector is None else _selector_judge(selector)
    if resource in CLASS_KEYS:
        found = spec.get(resource if config else CLASS_KEYS[resource])
        return None if found is None else _class_rule(found)
    if resource == CRDS:
        groups = frozenset(spec.get("crd_api_groups" if config else "crdApiGroups") or ())
        return _field_in(GROUP_PATH, groups) if groups else None
    return None


def _capsule_rule(spec: Spec, resource: str) -> Judge | None:
    if resource == NODES:
        labels = spec.get("nodeSelector") or {}
        return _selector_judge({"matchLabels": labels}) if labels else None
    path = CAPSULE_CLASS_PATHS.get(resource)
    if path is None:
        return None
    found: Any = spec
    for step in path:
        found = (found or {}).get(step)
    return None if found is None else _capsule_allowed(found)


# --- what a caller sees ------------------------------------------------------------------------


def visible(world: World, caller: Caller, resource: str) -> frozenset[str] | None:
    """Names of `resource` the caller sees; None when the proxy must not filter (pass-through).

    A caller sees the union over its tenants; tenants without a rule for the resource add
    nothing, and when none of its tenants has one, the request is the cluster's RBAC's to judge.
    """
    mine = memberships(world, caller)
    judges = [j for j in (rule(m, resource) for m in mine) if j is not None]
    if not judges:
        return None
    if resource == NAMESPACES:
        judges.append(_named(bound_namespaces(world, caller)))
    objects = world.objects.get(resource, {})
    return frozenset(name for name, obj in objects.items() if any(j(name, obj) for j in judges))


def filtered_resources(world: World) -> frozenset[str]:
    """Resources some tenant has a rule for (the proxy indexes those)."""
    out = set()
    for tenant in all_tenants(world):
        m = Membership(tenant, frozenset())
        out.update(r for r in GROUPS if rule(m, r) is not None)
    return frozenset(out)


def listed(
    world: World,
    caller: Caller,
    resource: str,
    client: Iterable[Requirement] = (),
    fields: Iterable[Requirement] = (),
) -> frozenset[str] | None:
    """What a list (or watch's initial events) with the client's label and field selectors
    returns; `fields` are requirements on `metadata.name`, the field every resource has."""
    seen = visible(world, caller, resource)
    if seen is None:
        return None
    objects = world.objects.get(resource, {})
    reqs, field_reqs = list(client), list(fields)
    return frozenset(
        n
        for n in seen
        if selects(reqs, _with_name_label(resource, n, objects[n]))
        and selects(field_reqs, {"metadata.name": n})
    )


def _with_name_label(resource: str, name: str, obj: Obj) -> Labels:
    """The API server keeps `kubernetes.io/metadata.name` equal to a namespace's name."""
    if resource == NAMESPACES:
        return {**obj.labels, "kubernetes.io/metadata.name": name}
    return obj.labels
