"""The ownership index: who the tenants are, which namespaces are theirs, and a compact copy of
every filtered cluster-scoped object (enough for `owns()`), fed by informers.

Tenancy comes only from admin-owned sources: the config file, the cluster-scoped Tenant CR,
Capsule Tenants, and namespace labels (namespaces are cluster-scoped; a tenant cannot relabel
them). Nothing a tenant can write inside its namespaces widens what it sees.
Every tenancy change bumps `generation` and wakes open watches so they re-judge what they show.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from tenant_proxy.config import TenancySettings, TenantSettings
from tenant_proxy.identity import Identity
from tenant_proxy.observability import Metrics
from tenant_proxy.tenancy import sources
from tenant_proxy.tenancy.informer import Informer
from tenant_proxy.tenancy.model import (
    NAMESPACES,
    GroupResource,
    Tenant,
    TenantView,
    field_value,
    memberships,
    owns,
    tenant_namespaces,
    view_of,
)
from tenant_proxy.upstream import Upstream, UpstreamError

log = logging.getLogger("tenant_proxy.index")

# Where the built-in filtered resources are served (generic ones are found by discovery).
BUILTIN_PATHS: dict[GroupResource, str] = {
    GroupResource("", "namespaces"): "/api/v1/namespaces",
    GroupResource("", "nodes"): "/api/v1/nodes",
    GroupResource("", "persistentvolumes"): "/api/v1/persistentvolumes",
    GroupResource("storage.k8s.io", "storageclasses"): "/apis/storage.k8s.io/v1/storageclasses",
    GroupResource(
        "networking.k8s.io", "ingressclasses"
    ): "/apis/networking.k8s.io/v1/ingressclasses",
    GroupResource(
        "scheduling.k8s.io", "priorityclasses"
    ): "/apis/scheduling.k8s.io/v1/priorityclasses",
    GroupResource("node.k8s.io", "runtimeclasses"): "/apis/node.k8s.io/v1/runtimeclasses",
    GroupResource("apiextensions.k8s.io", "customresourcedefinitions"): (
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    ),
}

Projection = dict[str, Any]


def project(obj: Mapping[str, Any], field_paths: frozenset[tuple[str, ...]]) -> Projection:
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


class TenancyIndex:
    """Tenants, namespace ownership and filtered objects, kept current by informers."""

    def __init__(self, settings: TenancySettings, upstream: Upstream, metrics: Metrics) -> None:
        self.settings = settings
        self._upstream, self._metrics = upstream, metrics
        self._config_tenants = sources.tenants_from_settings(
            settings.tenants, settings.namespace_label
        )
        self._cr_tenants: dict[str, Tenant] = {}
        self._capsule_tenants: dict[str, Tenant] = {}
        self._rolebindings: dict[str, tuple[str, frozenset[str], frozenset[str]]] = {}
        self._informers: dict[GroupResource, Informer[Projection]] = {}
        self._meta_informers: list[Informer[Any]] = []
        self._starting: set[GroupResource] = set()
        self._own: dict[str, frozenset[str]] | None = None
        self._views: dict[tuple[frozenset[int], frozenset[str]], TenantView | None] = {}
        self._owned: dict[tuple[GroupResource, frozenset[str], frozenset[str]], dict[str, Any]] = {}
        self.generation = 0
        self._changed = asyncio.Condition()
        # With Capsule, its label is the one its webhook enforces on tenant-created namespaces:
        # it wins over ours, which a Capsule tenant owner could otherwise set on its own
        # namespaces (unless Capsule's forbiddenLabels covers it).
        self._label_keys = (
            [sources.CAPSULE_NAMESPACE_LABEL, settings.namespace_label]
            if settings.capsule
            else [settings.namespace_label]
        )

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        if self.settings.watch_tenant_crds:
            self._meta_informers.append(
                Informer(
                    self._upstream,
                    f"/apis/{sources.TENANT_GROUP}/{sources.TENANT_VERSION}/{sources.TENANT_PLURAL}",
                    lambda o: o,
                    self._on_tenant_cr,
                )
            )
        if self.settings.capsule:
            self._meta_informers.append(
                Informer(
                    self._upstream,
                    f"/apis/{sources.CAPSULE_GROUP}/{sources.CAPSULE_VERSION}/{sources.CAPSULE_PLURAL}",
                    lambda o: o,
                    self._on_capsule_tenant,
                )
            )
        if self.settings.rolebinding_namespaces:
            self._meta_informers.append(
                Informer(
                    self._upstream,
                    "/apis/rbac.authorization.k8s.io/v1/rolebindings",
                    _binding_subjects,
                    self._on_rolebinding,
                )
            )
        for informer in self._meta_informers:
            informer.start()
        await self._ensure_resource_informers()

    async def stop(self) -> None:
        for informer in [*self._meta_informers, *self._informers.values()]:
            await informer.stop()

    @property
    def synced(self) -> bool:
        return all(i.synced.is_set() for i in [*self._meta_informers, *self._informers.values()])

    async def wait_synced(self, within: float) -> bool:
        """Whether every informer has listed, waiting up to `within` seconds for it."""
        informers = [*self._meta_informers, *self._informers.values()]
        try:
            async with asyncio.timeout(within):
                await asyncio.gather(*(i.synced.wait() for i in informers))
        except TimeoutError:
            return False
        return True

    def set_config_tenants(self, tenants: list[TenantSettings]) -> bool:
        """Adopt the config file's tenants after a reload; whether anything changed."""
        fresh = sources.tenants_from_settings(tenants, self.settings.namespace_label)
        if fresh == self._config_tenants:
            return False
        self._config_tenants = fresh
        self._bump()
        asyncio.get_running_loop().create_task(self._ensure_resource_informers())
        return True

    # -- what the proxy asks ------------------------------------------------------------------
    def tenants(self) -> list[Tenant]:
        return [*self._config_tenants, *self._cr_tenants.values(), *self._capsule_tenants.values()]

    def filtered_resources(self) -> frozenset[GroupResource]:
        grs = {NAMESPACES}
        for tenant in self.tenants():
            grs.update(tenant.rules)
        return frozenset(grs)

    def namespace_owner(self) -> dict[str, str]:
        labels = self._informers.get(NAMESPACES)
        owner: dict[str, str] = {}
        if labels is None:
            return owner
        values = {t.label_value: t.name for t in self.tenants()}
        for name, proj in labels.store.items():
            ns_labels = proj["metadata"]["labels"]
            for key in self._label_keys:
                tenant = values.get(ns_labels.get(key, ""))
                if tenant is not None:
                    owner[name] = tenant
                    break
        return owner

    def view_for(self, identity: Identity) -> TenantView | None:
        """The caller's view at this generation; callers with the same memberships share one.

        Per generation the index computes each tenant's namespaces once, so a tenancy change
        costs O(namespaces) plus O(tenants) per caller, not O(namespaces) per caller.
        """
        if self._own is None:
            self._own = tenant_namespaces(self.tenants(), self.namespace_owner())
        tenants = self.tenants()
        mine = memberships(identity, tenants, self._own)
        # Keyed by position, not name: the config, the CR and Capsule may each hold a "team-a".
        member_ids = {id(t) for t in mine}
        positions = frozenset(i for i, t in enumerate(tenants) if id(t) in member_ids)
        key = (positions, self._bound_namespaces(identity))
        if key not in self._views:
            self._views[key] = view_of(mine, self._own, key[1])
        return self._views[key]

    def objects(self, gr: GroupResource) -> dict[str, Projection]:
        """A copy of the indexed objects of `gr` (name -> projection)."""
        informer = self._informers.get(gr)
        return dict(informer.store) if informer is not None else {}

    def owned(self, gr: GroupResource, view: TenantView) -> dict[str, Projection]:
        """The indexed objects of `gr` that `view` owns, computed once per view and generation."""
        key = (gr, view.tenants, view.namespaces)
        if key not in self._owned:
            informer = self._informers.get(gr)
            store = informer.store if informer is not None else {}
            self._owned[key] = {k: p for k, p in store.items() if owns(view, gr, p)}
        return self._owned[key]

    def observe(self, gr: GroupResource, kind: str, obj: Mapping[str, Any]) -> bool:
        """Fast-forward the index with an object a watch stream just carried.

        A watch and the index's informer see the same change in no fixed order; judging a
        namespace's own event with a stale index would show a tenant, for one event, a namespace
        that just left it. Returns whether tenancy changed.
        """
        informer = self._informers.get(gr)
        if informer is None:
            return False
        before = self.generation
        informer.offer(kind, obj)
        return self.generation != before

    async def wait_change(self, generation: int) -> int:
        """Return once `generation` is stale (tenancy changed), with the new generation."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.generation != generation)
            return self.generation

    # -- keeping it current -------------------------------------------------------------------
    def _bump(self) -> None:
        self.generation += 1
        self._own = None
        self._views.clear()
        self._owned.clear()
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _bound_namespaces(self, identity: Identity) -> frozenset[str]:
        if not self.settings.rolebinding_namespaces:
            return frozenset()
        return frozenset(
            ns
            for ns, users, groups in self._rolebindings.values()
            if identity.user in users or not groups.isdisjoint(identity.groups)
        )

    def _on_tenant_cr(self, key: str, _old: object, new: Mapping[str, Any] | None) -> None:
        self._apply_tenant(
            self._cr_tenants,
            key,
            new,
            lambda o: sources.tenant_from_cr(o, self.settings.namespace_label),
        )

    def _on_capsule_tenant(self, key: str, _old: object, new: Mapping[str, Any] | None) -> None:
        self._apply_tenant(self._capsule_tenants, key, new, sources.tenant_from_capsule)

    def _apply_tenant(
        self, table: dict[str, Tenant], key: str, obj: Mapping[str, Any] | None, parse: Any
    ) -> None:
        if obj is None:
            table.pop(key, None)
        else:
            try:
                table[key] = parse(obj)
            except Exception as exc:
                # A broken definition grants nothing (fail closed) and says why.
                log.error("tenant %s refused: %s", key, exc)
                table.pop(key, None)
        self._bump()
        asyncio.get_running_loop().create_task(self._ensure_resource_informers())

    def _on_rolebinding(self, key: str, _old: object, new: object) -> None:
        if new is None:
            self._rolebindings.pop(key, None)
        else:
            self._rolebindings[key] = new  # type: ignore[assignment]
        self._bump()

    def _on_namespace(self, _key: str, old: Projection | None, new: Projection | None) -> None:
        old_labels = (old or {}).get("metadata", {}).get("labels", {})
        new_labels = (new or {}).get("metadata", {}).get("labels", {})
        if (
            old is None
            or new is None
            or any(old_labels.get(k) != new_labels.get(k) for k in self._label_keys)
        ):
            self._bump()

    def _field_paths(self, gr: GroupResource) -> frozenset[tuple[str, ...]]:
        paths: set[tuple[str, ...]] = set()
        for tenant in self.tenants():
            rule = tenant.all_rules().get(gr)
            if rule is not None:
                criteria = rule.criteria(tenant.name, frozenset({""}))
                if criteria.field_path:
                    paths.add(criteria.field_path)
        return frozenset(paths)

    async def _ensure_resource_informers(self) -> None:
        for gr in self.filtered_resources():
            if gr in self._informers or gr in self._starting:
                continue
            self._starting.add(gr)  # discovery below awaits: another call must not start it too
            path = BUILTIN_PATHS.get(gr) or await self._discover(gr)
            if path is None:
                self._starting.discard(gr)
                log.warning("no served version found for %s; it is not indexed", gr)
                continue
            paths = self._field_paths(gr)
            informer: Informer[Projection] = Informer(
                self._upstream,
                path,
                lambda o, p=paths: project(o, p),  # type: ignore[misc]
                self._on_namespace if gr == NAMESPACES else None,
                on_synced=self._metrics.informer_synced.labels(str(gr)).inc,
            )
            self._informers[gr] = informer
            self._starting.discard(gr)
            informer.start()

    async def _discover(self, gr: GroupResource) -> str | None:
        try:
            status, doc = await self._upstream.json_call("GET", f"/apis/{gr.group}")
        except UpstreamError:
            return None
        if status != 200 or not isinstance(doc, dict):
            return None
        version = (doc.get("preferredVersion") or {}).get("version")
        return f"/apis/{gr.group}/{version}/{gr.resource}" if version else None


def _binding_subjects(obj: Mapping[str, Any]) -> tuple[str, frozenset[str], frozenset[str]]:
    users, groups = set(), set()
    for s in obj.get("subjects") or []:
        if s.get("kind") == "User":
            users.add(s.get("name", ""))
        elif s.get("kind") == "Group":
            groups.add(s.get("name", ""))
        elif s.get("kind") == "ServiceAccount":
            users.add(f"system:serviceaccount:{s.get('namespace', '')}:{s.get('name', '')}")
    return (
        str((obj.get("metadata") or {}).get("namespace", "")),
        frozenset(users),
        frozenset(groups),
    )
