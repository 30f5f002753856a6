"""Tenants from their three admin-owned sources, through one code path.

The config file's tenants, the cluster-scoped `tenancy.tenant-proxy.io/v1alpha1` Tenant custom
resource, and Capsule's `capsule.clastix.io/v1beta2` Tenants all become a Tenant-CR-shaped `spec`
first, then one function turns a spec into a `Tenant`. Pure: the index feeds it objects.
A spec that cannot be read is refused whole (logged by the caller), never half-applied.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from tenant_proxy.kube.labels import SelectorError, from_label_selector
from tenant_proxy.kube.resources import PERSISTENT_VOLUMES, GroupResource
from tenant_proxy.tenancy.model import Members, NamespaceOptions, Tenant
from tenant_proxy.tenancy.resource_table import RESOURCE_TABLE
from tenant_proxy.tenancy.rules import (
    ApiGroupRule,
    ClaimNamespaceRule,
    ClassRule,
    GenericRule,
    NodeRule,
    Rule,
)
from tenant_proxy.tenancy.settings import ClassRuleSettings, GenericRuleSettings, TenantSettings

TENANT_GROUP, TENANT_VERSION, TENANT_PLURAL = "tenancy.tenant-proxy.io", "v1alpha1", "tenants"
CAPSULE_GROUP, CAPSULE_VERSION, CAPSULE_PLURAL = "capsule.clastix.io", "v1beta2", "tenants"
CAPSULE_NAMESPACE_LABEL = "capsule.clastix.io/tenant"
SA_PREFIX = "system:serviceaccount:"


class TenantSpecError(ValueError):
    """A tenant definition that cannot be used; the message names the field."""


def _strings(value: object, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TenantSpecError(f"{where}: must be a list of strings")
    return frozenset(value)


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TenantSpecError(f"{where}: must be a mapping")
    return value


def _selector(value: object, where: str) -> Any:
    try:
        return from_label_selector(_mapping(value, where))
    except SelectorError as exc:
        raise TenantSpecError(f"{where}: {exc}") from None


def _service_account(name: str) -> str:
    """'ns:name' or the full user name -> `system:serviceaccount:ns:name`."""
    return name if name.startswith(SA_PREFIX) else SA_PREFIX + name


def _members(spec: Mapping[str, Any]) -> Members:
    m = _mapping(spec.get("members"), "spec.members")
    return Members(
        users=_strings(m.get("users"), "spec.members.users"),
        groups=_strings(m.get("groups"), "spec.members.groups"),
        service_accounts=frozenset(
            _service_account(s)
            for s in _strings(m.get("serviceAccounts"), "spec.members.serviceAccounts")
        ),
        all_service_accounts_of_own_namespaces=bool(m.get("allServiceAccountsOfOwnNamespaces")),
    )


def _owners(spec: Mapping[str, Any]) -> Members:
    o = _mapping(spec.get("owners"), "spec.owners")
    return Members(
        users=_strings(o.get("users"), "spec.owners.users"),
        groups=_strings(o.get("groups"), "spec.owners.groups"),
        service_accounts=frozenset(
            _service_account(s)
            for s in _strings(o.get("serviceAccounts"), "spec.owners.serviceAccounts")
        ),
    )


def _namespace_options(spec: Mapping[str, Any], label_key: str) -> NamespaceOptions:
    o = _mapping(spec.get("namespaceOptions"), "spec.namespaceOptions")
    texts = {}
    for key in ("prefix", "regex", "ownerClusterRole"):
        value = o.get(key)
        if value is not None and not isinstance(value, str):
            raise TenantSpecError(f"spec.namespaceOptions.{key}: must be a string")
        texts[key] = value or ""
    if texts["regex"]:
        try:
            re.compile(texts["regex"])
        except re.error as exc:
            raise TenantSpecError(f"spec.namespaceOptions.regex: {exc}") from None
    quota = o.get("quota")
    # bool is an int in Python; a YAML `true` is not a quota.
    if quota is not None and (isinstance(quota, bool) or not isinstance(quota, int) or quota < 0):
        raise TenantSpecError("spec.namespaceOptions.quota: must be a non-negative integer")
    return NamespaceOptions(
        label_key=label_key,
        prefix=texts["prefix"],
        regex=texts["regex"],
        quota=quota,
        owner_role=texts["ownerClusterRole"] or "admin",
    )


def _class_rule(value: object, where: str) -> ClassRule:
    spec = _mapping(value, where)
    regex = spec.get("regex")
    if regex is not None and not isinstance(regex, str):
        raise TenantSpecError(f"{where}.regex: must be a string")
    if regex:
        try:
            re.compile(regex)
        except re.error as exc:
            # Refused whole: a tenant whose rule cannot be read must grant nothing.
            raise TenantSpecError(f"{where}.regex: {exc}") from None
    selector = spec.get("selector")
    return ClassRule(
        names=_strings(spec.get("names"), f"{where}.names"),
        regex=regex or None,
        selector=_selector(selector, f"{where}.selector") if selector is not None else None,
    )


def _generic_rule(value: object, where: str) -> tuple[GroupResource, GenericRule]:
    spec = _mapping(value, where)
    resource = spec.get("resource")
    if not isinstance(resource, str) or not resource:
        raise TenantSpecError(f"{where}.resource: required")
    selector = spec.get("selector")
    try:
        rule = GenericRule(
            selector=_selector(selector, f"{where}.selector") if selector is not None else None,
            names=_strings(spec.get("names"), f"{where}.names"),
            field_path=spec.get("fieldPath") or None,
        )
    except ValueError as exc:
        raise TenantSpecError(f"{where}: {exc}") from None
    return GroupResource(str(spec.get("group") or ""), resource), rule


def _node_rule(value: object, where: str) -> NodeRule:
    return NodeRule(_selector(value, where))


def _api_group_rule(value: object, where: str) -> ApiGroupRule | None:
    # An empty allowlist is no rule at all: the tenant's CRD reads pass through (RBAC decides).
    return ApiGroupRule(_strings(value, where)) if value else None


# How a Tenant CR spec's value becomes each kind of rule the resource table names.
_PARSERS: dict[type[Rule], Callable[[object, str], Rule | None]] = {
    NodeRule: _node_rule,
    ClassRule: _class_rule,
    ApiGroupRule: _api_group_rule,
}

DEFAULT_LABEL = "tenant-proxy.io/tenant"


def tenant_from_spec(name: str, spec: Mapping[str, Any], label_key: str = DEFAULT_LABEL) -> Tenant:
    """A Tenant from a Tenant-CR-shaped spec. Raises TenantSpecError naming the bad field.

    Every tenant sees the PersistentVolumes bound into its namespaces, or labelled
    `<label_key>=<tenant>`, unless its spec gives persistentvolumes a rule of its own.
    """
    rules: dict[GroupResource, Rule] = {PERSISTENT_VOLUMES: ClaimNamespaceRule(label_key=label_key)}
    for row in RESOURCE_TABLE:
        value = spec.get(row.cr_key) if row.cr_key else None
        if value is not None:
            rule = _PARSERS[row.rule](value, f"spec.{row.cr_key}")
            if rule is not None:
                rules[row.gr] = rule
    for i, generic in enumerate(spec.get("resources") or []):
        gr, rule = _generic_rule(generic, f"spec.resources.{i}")
        rules[gr] = rule
    label_value = spec.get("namespaceLabelValue") or ""
    try:
        for each in rules.values():
            each.criteria(name, frozenset())  # every rule must compile now, not per request
        return Tenant(
            name=name,
            members=_members(spec),
            namespace_selector_value=str(label_value),
            namespaces=_strings(spec.get("namespaces"), "spec.namespaces"),
            rules=rules,
            owners=_owners(spec),
            namespace_options=_namespace_options(spec, label_key),
        )
    except (ValueError, re.error, SelectorError) as exc:
        raise TenantSpecError(str(exc)) from None


# --- the three sources ------------------------------------------------------------------------


def _class_spec(c: ClassRuleSettings) -> dict[str, Any]:
    out: dict[str, Any] = {"names": list(c.names)}
    if c.regex:
        out["regex"] = c.regex
    if c.selector is not None:
        out["selector"] = c.selector.model_dump()
    return out


def _generic_spec(g: GenericRuleSettings) -> dict[str, Any]:
    out: dict[str, Any] = {"group": g.group, "resource": g.resource, "names": list(g.names)}
    if g.selector is not None:
        out["selector"] = g.selector.model_dump()
    if g.field_path:
        out["fieldPath"] = g.field_path
    return out


def _spec_value(value: object) -> object:
    """A config-file rule setting as the Tenant CR spec writes it."""
    if isinstance(value, ClassRuleSettings):
        return _class_spec(value)
    if isinstance(value, BaseModel):
        return value.model_dump()
    assert isinstance(value, list)
    return list(value)


def spec_from_settings(t: TenantSettings) -> dict[str, Any]:
    """The config file's snake_case tenant as a Tenant CR spec."""
    spec: dict[str, Any] = {
        "members": {
            "users": list(t.members.users),
            "groups": list(t.members.groups),
            "serviceAccounts": list(t.members.serviceaccounts),
            "allServiceAccountsOfOwnNamespaces": t.members.all_serviceaccounts_of_own_namespaces,
        },
        "owners": {
            "users": list(t.owners.users),
            "groups": list(t.owners.groups),
            "serviceAccounts": list(t.owners.serviceaccounts),
        },
        "namespaceOptions": {
            **({"prefix": t.namespace_prefix} if t.namespace_prefix is not None else {}),
            **({"regex": t.namespace_regex} if t.namespace_regex else {}),
            **({"quota": t.namespace_quota} if t.namespace_quota is not None else {}),
            "ownerClusterRole": t.owner_cluster_role,
        },
        "namespaces": list(t.namespaces),
        "resources": [_generic_spec(g) for g in t.resources],
    }
    for row in RESOURCE_TABLE:
        if row.settings_key is None or row.cr_key is None:
            continue
        value = getattr(t, row.settings_key)
        if value is not None:
            spec[row.cr_key] = _spec_value(value)
    return spec


def tenants_from_settings(
    tenants: Iterable[TenantSettings], label_key: str = DEFAULT_LABEL
) -> list[Tenant]:
    return [tenant_from_spec(t.name, spec_from_settings(t), label_key) for t in tenants]


def _name(obj: Mapping[str, Any]) -> str:
    name = _mapping(obj.get("metadata"), "metadata").get("name")
    if not isinstance(name, str) or not name:
        raise TenantSpecError("metadata.name: required")
    return name


def tenant_from_cr(obj: Mapping[str, Any], label_key: str = DEFAULT_LABEL) -> Tenant:
    """A `tenancy.tenant-proxy.io/v1alpha1` Tenant object."""
    return tenant_from_spec(_name(obj), _mapping(obj.get("spec"), "spec"), label_key)


def _capsule_allowed(value: object, where: str) -> dict[str, Any]:
    """Capsule's AllowedListSpec / SelectorAllowedListSpec -> our class rule spec."""
    spec = _mapping(value, where)
    out: dict[str, Any] = {"names": list(_strings(spec.get("allowed"), f"{where}.allowed"))}
    if spec.get("allowedRegex"):
        out["regex"] = spec["allowedRegex"]
    if spec.get("matchLabels") or spec.get("matchExpressions"):
        out["selector"] = {
            "matchLabels": spec.get("matchLabels") or {},
            "matchExpressions": spec.get("matchExpressions") or [],
        }
    return out


def _capsule_node_selector(value: object, where: str) -> dict[str, Any] | None:
    """Capsule's nodeSelector is a map of labels; an empty one gives no nodes rule at all."""
    return {"matchLabels": dict(_mapping(value, where))} if value else None


# How a Capsule Tenant's value becomes our spec's, for each kind of rule it can give.
_CAPSULE: dict[type[Rule], Callable[[object, str], dict[str, Any] | None]] = {
    NodeRule: _capsule_node_selector,
    ClassRule: _capsule_allowed,
}


def _where(path: tuple[str, ...]) -> str:
    return ".".join(("spec", *path))


def _capsule_value(spec: Mapping[str, Any], path: tuple[str, ...]) -> object:
    """The value at `path` in a Capsule spec (None when absent); a step that is there but not
    a mapping is refused, as every other malformed field."""
    node: Mapping[str, Any] = spec
    for i, step in enumerate(path[:-1]):
        node = _mapping(node.get(step), _where(path[: i + 1]))
    return node.get(path[-1])


def spec_from_capsule(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A Capsule v1beta2 Tenant's spec in our shape: owners become members."""
    spec = _mapping(obj.get("spec"), "spec")
    users, groups, sas = [], [], []
    for i, owner in enumerate(spec.get("owners") or []):
        owner = _mapping(owner, f"spec.owners.{i}")
        kind, name = owner.get("kind"), owner.get("name")
        if not isinstance(name, str) or not name:
            raise TenantSpecError(f"spec.owners.{i}.name: required")
        if kind == "User":
            users.append(name)
        elif kind == "Group":
            groups.append(name)
        elif kind == "ServiceAccount":
            sas.append(name)
        else:
            raise TenantSpecError(
                f"spec.owners.{i}.kind: {kind!r} is not User/Group/ServiceAccount"
            )
    owners = {"users": users, "groups": groups, "serviceAccounts": sas}
    # Capsule's owners are the tenant's members and its namespace owners alike; its
    # namespaceOptions.quota caps the tenant's namespaces (names keep our default prefix rule).
    out: dict[str, Any] = {"members": owners, "owners": owners}
    quota = _mapping(spec.get("namespaceOptions"), "spec.namespaceOptions").get("quota")
    if quota is not None:
        out["namespaceOptions"] = {"quota": quota}
    for row in RESOURCE_TABLE:
        if row.capsule_field is None or row.cr_key is None:
            continue
        value = _capsule_value(spec, row.capsule_field)
        allowed = None if value is None else _CAPSULE[row.rule](value, _where(row.capsule_field))
        if allowed is not None:
            out[row.cr_key] = allowed
    return out


def tenant_from_capsule(obj: Mapping[str, Any]) -> Tenant:
    """A `capsule.clastix.io/v1beta2` Tenant; its namespaces carry Capsule's own label."""
    return tenant_from_spec(_name(obj), spec_from_capsule(obj), CAPSULE_NAMESPACE_LABEL)
