"""RBAC authorization as kube-apiserver's RBAC authorizer evaluates it.

Roles and bindings are ordinary stored objects, read through a StoreView on every decision
(no cache to invalidate). ClusterRoles with an `aggregationRule` get their rules the way the
clusterrole-aggregation controller would write them, resolved at evaluation time.
`bootstrap_policy` gives the roles and bindings a fresh v1.24 cluster has.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tenant_proxy.emulator.identity import split_service_account
from tenant_proxy.emulator.store import StoreView
from tenant_proxy.emulator.types import Attributes, KubeObject, UserInfo

RBAC_GROUP = "rbac.authorization.k8s.io"
SUPERUSER_GROUP = "system:masters"

PolicyRule = dict[str, Any]


@dataclass(frozen=True)
class Decision:
    """An authorization answer; `reason` as SubjectAccessReview shows it, `errors` are the
    evaluation errors met on the way (bindings to missing roles)."""

    allowed: bool
    reason: str = ""
    errors: tuple[str, ...] = ()


# --- rule matching (rbac/v1 helpers) -------------------------------------------------------


def _verb_matches(rule: PolicyRule, verb: str) -> bool:
    verbs = rule.get("verbs") or ()
    return "*" in verbs or verb in verbs


def _group_matches(rule: PolicyRule, group: str) -> bool:
    groups = rule.get("apiGroups") or ()
    return "*" in groups or group in groups


def _resource_matches(rule: PolicyRule, resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for allowed in rule.get("resources") or ():
        if allowed in ("*", combined):
            return True
        if subresource and allowed == f"*/{subresource}":
            return True
    return False


def _name_matches(rule: PolicyRule, name: str) -> bool:
    names = rule.get("resourceNames") or ()
    return not names or name in names


def _url_matches(rule: PolicyRule, path: str) -> bool:
    for allowed in rule.get("nonResourceURLs") or ():
        if allowed in ("*", path):
            return True
        if allowed.endswith("*") and path.startswith(allowed.rstrip("*")):
            return True
    return False


def rule_allows(attrs: Attributes, rule: PolicyRule) -> bool:
    """rbac.RuleAllows: does one PolicyRule cover the request?"""
    if not _verb_matches(rule, attrs.verb):
        return False
    if not attrs.resource_request:
        return _url_matches(rule, attrs.path)
    return (
        _group_matches(rule, attrs.api_group)
        and _resource_matches(rule, attrs.resource, attrs.subresource)
        and _name_matches(rule, attrs.name)
    )


# --- subjects ------------------------------------------------------------------------------


def subject_applies(user: UserInfo, subject: Mapping[str, Any], binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "User":
        return bool(user.name == name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return bool(namespace) and split_service_account(user.name) == (namespace, name)
    return False


def describe_subject(subject: Mapping[str, Any], binding_namespace: str) -> str:
    kind, name = subject.get("kind", ""), subject.get("name", "")
    if kind == "ServiceAccount":
        name = f"{name}/{subject.get('namespace') or binding_namespace}"
    return f'{kind} "{name}"'


def describe_binding(binding: KubeObject, subject: Mapping[str, Any]) -> str:
    """As the authorizer's describers print a binding in a SubjectAccessReview reason."""
    meta = binding.get("metadata") or {}
    ref = binding.get("roleRef") or {}
    namespace = meta.get("namespace") or ""
    if namespace:
        what = f'RoleBinding "{meta.get("name", "")}/{namespace}"'
    else:
        what = f'ClusterRoleBinding "{meta.get("name", "")}"'
    role = f'{ref.get("kind", "")} "{ref.get("name", "")}"'
    return f"{what} of {role} to {describe_subject(subject, namespace)}"


# --- label selectors for aggregation -------------------------------------------------------


def _expression_matches(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or ()
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return False


def label_selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics; an empty selector matches everything."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    return all(_expression_matches(e, labels) for e in selector.get("matchExpressions") or ())


# --- the authorizer ------------------------------------------------------------------------


def _name(obj: KubeObject) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _age(obj: KubeObject) -> tuple[str, int]:
    meta = obj.get("metadata") or {}
    rv = str(meta.get("resourceVersion") or "0")
    return str(meta.get("creationTimestamp") or ""), int(rv) if rv.isdigit() else 0


def _labels(obj: KubeObject) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


class Authorizer:
    """Allows a request when system:masters, or when a binding of the user grants a rule."""

    def __init__(self, store_view: StoreView) -> None:
        self._store = store_view

    def authorize(self, user: UserInfo, attrs: Attributes) -> bool:
        return self.decide(user, attrs).allowed

    def decide(self, user: UserInfo, attrs: Attributes) -> Decision:
        if SUPERUSER_GROUP in user.groups:
            # The privileged-group authorizer runs before RBAC and gives no reason.
            return Decision(True)
        found: list[str] = []
        for source, rules, error in self._visit(user, attrs.namespace):
            if error:
                found.append(error)
            if any(rule_allows(attrs, r) for r in rules):
                return Decision(True, f"RBAC: allowed by {source}", tuple(found))
        return Decision(False, _aggregate_reason(found), tuple(found))

    def resolve_rules(self, user: UserInfo, namespace: str) -> tuple[list[PolicyRule], list[str]]:
        """Every rule granted to `user` in `namespace` (cluster-wide ones first) and the errors
        met on the way, as DefaultRuleResolver.RulesFor collects them."""
        rules: list[PolicyRule] = []
        found: list[str] = []
        for _, granted, error in self._visit(user, namespace):
            rules.extend(granted)
            if error:
                found.append(error)
        return rules, found

    def rules_for(
        self, user: UserInfo, namespace: str
    ) -> tuple[list[PolicyRule], list[PolicyRule]]:
        """(resource rules, non-resource rules) in SelfSubjectRulesReview's shapes."""
        rules, _ = self.resolve_rules(user, namespace)
        return resource_rules(rules), non_resource_rules(rules)

    def cluster_role_rules(self, name: str) -> list[PolicyRule] | None:
        """A ClusterRole's rules with aggregation resolved; None when it does not exist."""
        role = self._store.get_object(RBAC_GROUP, "clusterroles", "", name)
        if role is None:
            return None
        return self._aggregated(role, frozenset())

    def _aggregated(self, role: KubeObject, seen: frozenset[str]) -> list[PolicyRule]:
        aggregation = role.get("aggregationRule")
        if not aggregation:
            return list(role.get("rules") or ())
        selectors = aggregation.get("clusterRoleSelectors") or ()
        seen = seen | {_name(role)}
        members = sorted(
            (
                r
                for r in self._store.list_objects(RBAC_GROUP, "clusterroles")
                if _name(r) not in seen
                and any(label_selector_matches(s, _labels(r)) for s in selectors)
            ),
            key=_name,
        )
        merged: list[PolicyRule] = []
        for member in members:
            for rule in self._aggregated(member, seen):
                if rule not in merged:
                    merged.append(rule)
        return merged

    def _role_rules(self, ref: Mapping[str, Any], namespace: str) -> tuple[list[PolicyRule], str]:
        name = str(ref.get("name", ""))
        if ref.get("kind") == "ClusterRole":
            rules = self.cluster_role_rules(name)
            missing = f'clusterrole.{RBAC_GROUP} "{name}" not found'
            return (rules, "") if rules is not None else ([], missing)
        role = self._store.get_object(RBAC_GROUP, "roles", namespace, name)
        if role is None:
            return [], f'role.{RBAC_GROUP} "{name}" not found'
        return list(role.get("rules") or ()), ""

    def _bindings(self, namespace: str) -> Iterator[KubeObject]:
        # Creation order, so rule listings are stable whatever order the store keeps.
        yield from sorted(self._store.list_objects(RBAC_GROUP, "clusterrolebindings"), key=_age)
        if namespace:
            found = self._store.list_objects(RBAC_GROUP, "rolebindings", namespace)
            yield from sorted(found, key=_age)

    def _visit(self, user: UserInfo, namespace: str) -> Iterator[tuple[str, list[PolicyRule], str]]:
        """(binding description, its rules, error) for each binding that applies to `user`."""
        for binding in self._bindings(namespace):
            binding_ns = str((binding.get("metadata") or {}).get("namespace") or "")
            subject = next(
                (s for s in binding.get("subjects") or () if subject_applies(user, s, binding_ns)),
                None,
            )
            if subject is None:
                continue
            rules, error = self._role_rules(binding.get("roleRef") or {}, binding_ns)
            yield describe_binding(binding, subject), rules, error


def _aggregate_reason(found: list[str]) -> str:
    # As utilerrors.NewAggregate prints: one error bare, several in brackets.
    if not found:
        return ""
    return f"RBAC: {found[0]}" if len(found) == 1 else f"RBAC: [{', '.join(found)}]"


def resource_rules(rules: list[PolicyRule]) -> list[PolicyRule]:
    out = []
    for rule in rules:
        if rule.get("resources"):
            item: PolicyRule = {
                "verbs": list(rule.get("verbs") or ()),
                "apiGroups": list(rule.get("apiGroups") or ()),
                "resources": list(rule["resources"]),
            }
            if rule.get("resourceNames"):
                item["resourceNames"] = list(rule["resourceNames"])
            out.append(item)
    return out


def non_resource_rules(rules: list[PolicyRule]) -> list[PolicyRule]:
    return [
        {"verbs": list(r.get("verbs") or ()), "nonResourceURLs": list(r["nonResourceURLs"])}
        for r in rules
        if r.get("nonResourceURLs")
    ]
