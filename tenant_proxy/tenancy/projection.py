"""What the index keeps of each filtered object, and when a tenancy change makes it re-read.

The index holds each object as the least `owns()` can judge: name, labels and the fields the
rules compare. Which fields depends on the rules, so a tenancy change can need a field the held
projections lack (or a resource nothing held): those must be listed again before any judgement
rests on them. Pure: the index applies the plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tenant_proxy.kube.resources import NAMESPACES, GroupResource
from tenant_proxy.tenancy.model import Tenant
from tenant_proxy.tenancy.ownership import field_value
from tenant_proxy.tenancy.rules import NodeMetricsRule

FieldPath = tuple[str, ...]
Projection = dict[str, Any]
Needs = Mapping[GroupResource, frozenset[FieldPath]]
"""Each filtered resource and the fields its rules read."""


def project(obj: Mapping[str, Any], field_paths: Iterable[FieldPath]) -> Projection:
    """The least of `obj` that `owns()` can judge: name, labels, and the rules' fields."""
    meta = obj.get("metadata") or {}
    out: Projection = {"metadata": {"name": meta.get("name"), "labels": meta.get("labels") or {}}}
    for path in field_paths:
        value = field_value(obj, path)
        if value is None:
            continue
        node = out
        for step in path[:-1]:
            node = node.setdefault(step, {})
        node[path[-1]] = value
    return out


def projection_needs(tenants: Iterable[Tenant]) -> dict[GroupResource, frozenset[FieldPath]]:
    """Every resource some tenant's rule filters (namespaces always), with the fields read."""
    needs: dict[GroupResource, set[FieldPath]] = {NAMESPACES: set()}
    for tenant in tenants:
        for gr, rule in tenant.all_rules().items():
            if isinstance(rule, NodeMetricsRule):
                # Judged on the NodeMetrics read, by its node's labels: nothing to index, and
                # metrics-server cannot be watched (an informer would only ever fail).
                continue
            paths = needs.setdefault(gr, set())
            # The field a rule reads does not depend on the namespaces it compares with.
            path = rule.criteria(tenant.label_value, frozenset()).field_path
            if path:
                paths.add(path)
    return {gr: frozenset(paths) for gr, paths in needs.items()}


def covers(held: Iterable[FieldPath], path: FieldPath) -> bool:
    """Whether projections holding `held` can answer `path`: a held path or one above it (a
    projection keeps the whole value found at a path)."""
    return any(path[: len(h)] == h for h in held)


@dataclass(frozen=True)
class ProjectionPlan:
    """How to bring the indexed resources in line with what the rules need."""

    start: frozenset[GroupResource]
    """Needed and not indexed: start an informer."""
    reproject: frozenset[GroupResource]
    """Indexed without a field a rule now reads: list again, projecting that field too."""
    stop: frozenset[GroupResource]
    """Indexed and read by no rule any more."""

    @property
    def resync(self) -> frozenset[GroupResource]:
        """What no judgement may rest on until it has been listed (again)."""
        return self.start | self.reproject


def plan_projections(held: Needs, needed: Needs) -> ProjectionPlan:
    """The plan from what the informers project (`held`) to what the rules read (`needed`).

    A field no rule reads any more does not cause a re-list: keeping it costs a little memory
    until the next re-list, reading everything again costs a full list.
    """
    kept = needed.keys() & held.keys()
    return ProjectionPlan(
        start=frozenset(needed.keys() - held.keys()),
        reproject=frozenset(gr for gr in kept if not all(covers(held[gr], p) for p in needed[gr])),
        stop=frozenset(held.keys() - needed.keys()),
    )
