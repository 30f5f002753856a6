"""The filtered cluster-scoped resources, one row each: where the resource is served, the rule
it takes, and the key that gives a tenant that rule in each of the three tenancy sources.

The config file's settings, the three parsers of `sources`, the model's rule check and the
index's informers all read this table, so a new class-like resource is one row here (and its
field in deploy/crd-tenant.yaml, which the API server would otherwise prune). nodes.metrics.k8s.io
is not a row: it follows from the nodes rule (`Tenant.all_rules`). Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenant_proxy.kube.resources import CRDS, NAMESPACES, NODES, PERSISTENT_VOLUMES, GroupResource
from tenant_proxy.tenancy.rules import (
    ApiGroupRule,
    ClaimNamespaceRule,
    ClassRule,
    NamespaceRule,
    NodeRule,
    Rule,
)


@dataclass(frozen=True)
class FilteredResource:
    """One filtered resource. A key left None: that source cannot give a rule for it (the
    namespaces rule is every tenant's own; PVs get theirs from the tenant's namespaces)."""

    gr: GroupResource
    rule: type[Rule]
    """The rule a tenant's spec gives it (a generic rule is accepted for any resource)."""
    path: str | None
    """Where it is served; None: found by discovery (a CRD's resource, served once installed)."""
    settings_key: str | None
    """Its key in a config-file tenant."""
    cr_key: str | None
    """Its key in a tenancy.tenant-proxy.io Tenant's spec."""
    capsule_field: tuple[str, ...] | None
    """Where a capsule.clastix.io/v1beta2 Tenant's spec allows it."""


def _class(
    group: str, resource: str, version: str | None, cr_key: str, capsule: tuple[str, ...] | None
) -> FilteredResource:
    path = f"/apis/{group}/{version}/{resource}" if version else None
    return FilteredResource(
        GroupResource(group, resource), ClassRule, path, resource, cr_key, capsule
    )


RESOURCE_TABLE: tuple[FilteredResource, ...] = (
    FilteredResource(NAMESPACES, NamespaceRule, "/api/v1/namespaces", None, None, None),
    FilteredResource(
        NODES, NodeRule, "/api/v1/nodes", "node_selector", "nodeSelector", ("nodeSelector",)
    ),
    FilteredResource(
        PERSISTENT_VOLUMES, ClaimNamespaceRule, "/api/v1/persistentvolumes", None, None, None
    ),
    FilteredResource(
        CRDS,
        ApiGroupRule,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "crd_api_groups",
        "crdApiGroups",
        None,
    ),
    _class("storage.k8s.io", "storageclasses", "v1", "storageClasses", ("storageClasses",)),
    _class(
        "networking.k8s.io",
        "ingressclasses",
        "v1",
        "ingressClasses",
        ("ingressOptions", "allowedClasses"),
    ),
    _class("scheduling.k8s.io", "priorityclasses", "v1", "priorityClasses", ("priorityClasses",)),
    _class("node.k8s.io", "runtimeclasses", "v1", "runtimeClasses", ("runtimeClasses",)),
    # CRDs' resources (Gateway API, CSI snapshots): served once installed, found by discovery.
    _class("gateway.networking.k8s.io", "gatewayclasses", None, "gatewayClasses", None),
    _class("snapshot.storage.k8s.io", "volumesnapshotclasses", None, "volumeSnapshotClasses", None),
    _class("storage.k8s.io", "csidrivers", "v1", "csiDrivers", None),
)

BUILTIN_RULE_KINDS: dict[GroupResource, type[Rule]] = {row.gr: row.rule for row in RESOURCE_TABLE}
"""The rule type each built-in resource takes; GenericRule is accepted for any resource."""

BUILTIN_PATHS: dict[GroupResource, str] = {
    row.gr: row.path for row in RESOURCE_TABLE if row.path is not None
}
"""Where the built-in filtered resources are served (the others are found by discovery)."""

CLASS_SETTINGS_KEYS: tuple[str, ...] = tuple(
    row.settings_key for row in RESOURCE_TABLE if row.rule is ClassRule and row.settings_key
)
"""The config-file tenant's class-rule keys (each a ClassRuleSettings field)."""
