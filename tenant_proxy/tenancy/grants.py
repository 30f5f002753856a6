"""Namespaces RoleBindings open to their subjects (`tenancy.rolebinding_namespaces`), and
whether a change of them can alter what any caller sees.

A RoleBinding contributes grants: (subject, its namespace). Only the set of grants matters, so
a re-apply, a second binding for the same subject or a change of annotations or roleRef changes
nothing. A grant whose subject sees the namespace anyway changes nothing either: open watches
need not be woken for it. Pure: the index feeds it bindings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from tenant_proxy.kube.resources import NAMESPACES
from tenant_proxy.tenancy.model import SERVICE_ACCOUNT_PREFIX, Tenant, TenantNamespaces, is_member
from tenant_proxy.tenancy.rules import NamespaceRule


class Subject(NamedTuple):
    """Whom a binding names: kind "User" or "Group" (a ServiceAccount is the User
    `system:serviceaccount:<namespace>:<name>`, as kube-apiserver authenticates it)."""

    kind: str
    name: str


class Grant(NamedTuple):
    subject: Subject
    namespace: str


def binding_grants(obj: Mapping[str, Any]) -> frozenset[Grant]:
    """The grants of one RoleBinding: each subject it names, to the binding's namespace."""
    namespace = (obj.get("metadata") or {}).get("namespace")
    subjects = obj.get("subjects")
    if not isinstance(namespace, str) or not namespace or not isinstance(subjects, list):
        return frozenset()
    found = (_subject(s, namespace) for s in subjects if isinstance(s, dict))
    return frozenset(Grant(s, namespace) for s in found if s is not None)


def _subject(spec: Mapping[str, Any], binding_namespace: str) -> Subject | None:
    kind, name = spec.get("kind"), spec.get("name")
    if not isinstance(name, str) or not name.strip():
        return None  # no caller has an empty name
    if kind in ("User", "Group"):
        return Subject(kind, name)
    if kind == "ServiceAccount":
        # As kube-apiserver's RBAC authorizer (appliesToUser): no namespace means the binding's.
        namespace = spec.get("namespace") or binding_namespace
        return Subject("User", f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}")
    return None


class GrantTable:
    """Every binding's grants, counted: a grant two bindings give lasts until both are gone."""

    def __init__(self) -> None:
        self._count: Counter[Grant] = Counter()
        self._namespaces: dict[Subject, set[str]] = {}

    def replace(self, old: frozenset[Grant], new: frozenset[Grant]) -> frozenset[Grant]:
        """Swap one binding's grants `old` for `new`; the grants that appeared or vanished."""
        flipped: set[Grant] = set()
        for grant in new - old:
            self._count[grant] += 1
            if self._count[grant] == 1:
                flipped.add(grant)
                self._namespaces.setdefault(grant.subject, set()).add(grant.namespace)
        for grant in old - new:
            self._count[grant] -= 1
            if self._count[grant] <= 0:
                del self._count[grant]
                flipped.add(grant)
                namespaces = self._namespaces[grant.subject]
                namespaces.discard(grant.namespace)
                if not namespaces:
                    del self._namespaces[grant.subject]
        return frozenset(flipped)

    def frozen(self) -> dict[Subject, frozenset[str]]:
        """The grants as they stand, unaffected by later changes."""
        return {subject: frozenset(ns) for subject, ns in self._namespaces.items()}


def granted_namespaces(
    grants: Mapping[Subject, Collection[str]], user: str, groups: Iterable[str]
) -> frozenset[str]:
    """The namespaces `grants` open to a caller: to its user name or to any of its groups."""
    found = set(grants.get(Subject("User", user), ()))
    for group in groups:
        found.update(grants.get(Subject("Group", group), ()))
    return frozenset(found)


class _NameOnly(NamedTuple):
    """A caller known only by its user name: it belongs to what that name alone admits."""

    user: str
    groups: tuple[str, ...] = ()


def grant_matters(grant: Grant, tenants: Sequence[Tenant], own: TenantNamespaces) -> bool:
    """Whether `grant` appearing or vanishing can change what some caller sees.

    Not when a tenant that admits every caller the subject names (by that user name alone, or
    by that group), whatever else the caller is, owns the namespace and shows its namespaces
    by name (the default rule): each of them sees it anyway. Membership only grows with a
    caller's groups, so this holds for every caller. `own`: each tenant's namespaces.
    """
    subject = grant.subject
    if subject.kind == "Group":
        admitting = [t for t in tenants if subject.name in t.members.groups]
    else:
        caller = _NameOnly(subject.name)
        admitting = [t for t in tenants if is_member(caller, t, own[t.namespace_key])]
    return not any(
        grant.namespace in own[t.namespace_key]
        and isinstance(t.all_rules()[NAMESPACES], NamespaceRule)
        for t in admitting
    )
