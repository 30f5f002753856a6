"""What a tenant should see, written from the issue's rules alone (no tenant_proxy import).

The differential test compares the proxy's answers with this module's. Everything here is pure:
a `World` (the cluster-scoped objects and Tenant CR specs the emulator holds) and a caller in,
the names the caller may see out. Label selectors are evaluated here too, by their Kubernetes
meaning, so a bug in the proxy's selector code cannot hide behind the same bug in the oracle.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TENANT_LABEL = "tenant-proxy.io/tenant"
SA_PREFIX = "system:serviceaccount:"

Labels = Mapping[str, str]
Spec = Mapping[str, Any]

NAMESPACES = "namespaces"
NODES = "nodes"
PVS = "persistentvolumes"
STORAGE_CLASSES = "storageclasses"
INGRESS_CLASSES = "ingressclasses"
PRIORITY_CLASSES = "priorityclasses"
CLASS_KEYS = {
    STORAGE_CLASSES: "storageClasses",
    INGRESS_CLASSES: "ingressClasses",
    PRIORITY_CLASSES: "priorityClasses",
}


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
    """A cluster-scoped object as the oracle needs it; `claim` is a PV's claimRef namespace."""

    labels: Mapping[str, str] = field(default_factory=dict)
    claim: str | None = None


@dataclass(frozen=True)
class World:
    """resource plural -> name -> object, and tenant name -> Tenant CR-shaped spec."""

    objects: Mapping[str, Mapping[str, Obj]]
    tenants: Mapping[str, Spec]


def label_value(name: str, spec: Spec) -> str:
    """The value of TENANT_LABEL that marks a tenant's namespaces and PVs: its name by default."""
    return str(spec.get("namespaceLabelValue") or name)


def tenant_namespaces(world: World, name: str, spec: Spec) -> frozenset[str]:
    """Listed explicitly (existing or not), or labelled with the tenant's label value."""
    value = label_value(name, spec)
    labelled = {
        ns
        for ns, obj in world.objects.get(NAMESPACES, {}).items()
        if obj.labels.get(TENANT_LABEL) == value
    }
    return frozenset(spec.get("namespaces") or ()) | labelled


def _service_account_namespace(user: str) -> str | None:
    if not user.startswith(SA_PREFIX):
        return None
    parts = user[len(SA_PREFIX) :].split(":")
    return parts[0] if len(parts) == 2 and all(parts) else None


def is_member(caller: Caller, spec: Spec, own: frozenset[str]) -> bool:
    members = spec.get("members") or {}
    accounts = {
        a if a.startswith(SA_PREFIX) else SA_PREFIX + a
        for a in members.get("serviceAccounts") or ()
    }
    if caller.user in (members.get("users") or ()) or caller.user in accounts:
        return True
    if set(members.get("groups") or ()) & set(caller.groups):
        return True
    if members.get("allServiceAccountsOfOwnNamespaces"):
        return _service_account_namespace(caller.user) in own
    return False


@dataclass(frozen=True)
class Membership:
    name: str
    spec: Spec
    namespaces: frozenset[str]


def memberships(world: World, caller: Caller) -> list[Membership]:
    out = []
    for name, spec in world.tenants.items():
        own = tenant_namespaces(world, name, spec)
        if is_member(caller, spec, own):
            out.append(Membership(name, spec, own))
    return out


def _class_allows(rule: Spec, name: str, labels: Labels) -> bool:
    if name in (rule.get("names") or ()):
        return True
    regex = rule.get("regex")
    if regex and re.fullmatch(regex, name):
        return True
    selector = rule.get("selector")
    return selector is not None and selects(requirements_of(selector), labels)


def _owned_by(resource: str, m: Membership, name: str, obj: Obj) -> bool:
    if resource == NAMESPACES:
        return name in m.namespaces
    if resource == PVS:
        labelled = obj.labels.get(TENANT_LABEL) == label_value(m.name, m.spec)
        return obj.claim in m.namespaces or labelled
    if resource == NODES:
        return selects(requirements_of(m.spec["nodeSelector"]), obj.labels)
    return _class_allows(m.spec[CLASS_KEYS[resource]], name, obj.labels)


def _has_rule(resource: str, spec: Spec) -> bool:
    if resource in (NAMESPACES, PVS):
        return True
    if resource == NODES:
        return spec.get("nodeSelector") is not None
    return spec.get(CLASS_KEYS[resource]) is not None


def visible(world: World, caller: Caller, resource: str) -> frozenset[str] | None:
    """Names of `resource` the caller sees; None when the proxy must not filter (pass-through).

    A caller sees the union over its tenants; tenants without a rule for the resource add
    nothing, and when none of its tenants has one, the request is the cluster's RBAC's to judge.
    """
    ruled = [m for m in memberships(world, caller) if _has_rule(resource, m.spec)]
    if not ruled:
        return None
    objects = world.objects.get(resource, {})
    return frozenset(
        name
        for name, obj in objects.items()
        if any(_owned_by(resource, m, name, obj) for m in ruled)
    )


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
