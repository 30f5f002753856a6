"""A config-file tenant's settings: members and owners, namespace self-service, and its rules
(the class rules' fields come from the resource table, one per class-like resource)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from tenant_proxy.tenancy.resource_table import CLASS_SETTINGS_KEYS


def _regex(value: str | None) -> str | None:
    """A regular expression setting, refused at load time when it does not compile."""
    if value:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


class _Strict(BaseModel):
    # As config's settings: unknown keys are mistakes (a typo would otherwise silently disable
    # a rule).
    model_config = ConfigDict(extra="forbid", frozen=True)


class SelectorSettings(_Strict):
    """A Kubernetes LabelSelector."""

    matchLabels: dict[str, str] = Field(default_factory=dict)
    matchExpressions: list[dict[str, Any]] = Field(default_factory=list)


class ClassRuleSettings(_Strict):
    """Which objects of a class-like resource a tenant sees."""

    names: list[str] = Field(default_factory=list)
    regex: str | None = Field(None, description="Matched against the whole name.")
    selector: SelectorSettings | None = None

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return _regex(value)


class GenericRuleSettings(_Strict):
    """A rule for any other cluster-scoped resource."""

    group: str = ""
    resource: str
    names: list[str] = Field(default_factory=list)
    selector: SelectorSettings | None = None
    field_path: str | None = Field(
        None,
        description="A field compared with the tenant's namespaces, e.g. spec.claimRef.namespace.",
    )


class MembersSettings(_Strict):
    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    serviceaccounts: list[str] = Field(
        default_factory=list, description="'namespace:name' or 'system:serviceaccount:ns:name'."
    )
    all_serviceaccounts_of_own_namespaces: bool = False


class OwnersSettings(_Strict):
    """Who may create and delete the tenant's namespaces through the proxy (namespace
    self-service). Owners are members too."""

    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    serviceaccounts: list[str] = Field(
        default_factory=list, description="'namespace:name' or 'system:serviceaccount:ns:name'."
    )


class _TenantFields(_Strict):
    """One tenant from the config file. Its class rules are fields named by the resource table's
    `settings_key`s (each a ClassRuleSettings or None), added in `TenantSettings`."""

    name: str = Field(min_length=1)
    members: MembersSettings = Field(default_factory=MembersSettings)
    owners: OwnersSettings = Field(default_factory=OwnersSettings)
    namespace_prefix: str | None = Field(
        None, description="Self-service names must start with this (default '<tenant>-')."
    )
    namespace_regex: str | None = Field(
        None, description="Self-service names must match this whole (instead of the prefix)."
    )
    namespace_quota: int | None = Field(
        None, ge=0, description="Most namespaces the tenant may hold (None: no limit)."
    )
    owner_cluster_role: str = Field(
        "admin", min_length=1, description="ClusterRole the owners get in a namespace they create."
    )
    namespaces: list[str] = Field(default_factory=list, description="Explicit namespaces.")
    node_selector: SelectorSettings | None = None
    crd_api_groups: list[str] = Field(default_factory=list)
    resources: list[GenericRuleSettings] = Field(default_factory=list)

    @field_validator("namespace_regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        return _regex(value)

    def class_rule(self, settings_key: str) -> ClassRuleSettings | None:
        """The class rule under `settings_key` (a resource table row's), if the tenant has one."""
        rule: ClassRuleSettings | None = getattr(self, settings_key)
        return rule


def _with_class_rules(fields: type[_TenantFields]) -> type[_TenantFields]:
    class_rules: dict[str, Any] = {
        key: (ClassRuleSettings | None, None) for key in CLASS_SETTINGS_KEYS
    }
    return create_model(
        "TenantSettings",
        __base__=fields,
        __module__=__name__,
        __doc__=fields.__doc__,
        **class_rules,
    )


# Typed code reads the class rules with `class_rule(key)`: mypy sees the declared fields only.
if TYPE_CHECKING:
    TenantSettings = _TenantFields
else:
    TenantSettings = _with_class_rules(_TenantFields)


class TenancySettings(_Strict):
    """Where tenants come from and how namespaces are tied to them."""

    namespace_label: str = "tenant-proxy.io/tenant"
    tenants: list[TenantSettings] = Field(default_factory=list)
    watch_tenant_crds: bool = Field(True, description="Read tenancy.tenant-proxy.io Tenants.")
    capsule: bool = Field(False, description="Read capsule.clastix.io/v1beta2 Tenants too.")
    rolebinding_namespaces: bool = Field(
        False, description="Also show namespaces where a RoleBinding names the caller."
    )
    sync_timeout_seconds: float = Field(
        10.0, gt=0, description="How long a filtered request waits for the first sync (then 503)."
    )
    namespace_creator: str = Field(
        "system:serviceaccount:tenant-proxy:namespace-creator",
        min_length=1,
        description="Who the proxy impersonates to create and delete tenants' namespaces "
        "(deploy/clusterrole-namespace-creator.yaml grants it exactly that); read at start.",
    )
