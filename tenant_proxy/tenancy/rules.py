"""A tenant's rules as data: each compiles to the same `Criteria` value.

An object is the tenant's when ANY alternative of its criteria holds (labels match a selector,
the name is listed or matches a pattern, or a field holds one of a set of strings). Ownership
(`ownership.Owns`) and pushdown both read only Criteria, so the built-in rules and the generic
rule share one code path. Which resource takes which rule: `resource_table`. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from tenant_proxy.kube.labels import Op, Requirement, Selector


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
    """Class-like resources (storage/ingress/priority/runtime/gateway/volumesnapshot classes,
    CSI drivers: the resource table's ClassRule rows).

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


def _path(dotted: str) -> tuple[str, ...]:
    parts = tuple(dotted.split("."))
    if not all(parts):
        raise ValueError(f"invalid field path {dotted!r}")
    return parts
