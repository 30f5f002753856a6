"""DELETE as the real server and its controllers carry it out: finalizers, the PV/PVC
protection controllers, namespace termination, a CRD's objects, a node's Lease."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from tenant_proxy.emulator import errors, kubelet
from tenant_proxy.emulator.clock import rfc3339
from tenant_proxy.emulator.objects import CRDS, NAMESPACES, NODES, check_preconditions, clone
from tenant_proxy.emulator.resources import Registry
from tenant_proxy.emulator.store import Store
from tenant_proxy.emulator.types import KubeObject, ResourceType

# Resources whose DELETE answers with the object rather than a Success Status.
_RETURNS_DELETED = {NAMESPACES, ("", "pods"), ("", "services"), CRDS}
# Finalizers whose controllers (PV/PVC protection) release objects nothing is using.
_PROTECTION_FINALIZERS = ("kubernetes.io/pv-protection", "kubernetes.io/pvc-protection")

RemovedHook = Callable[[ResourceType, KubeObject], None]
Replace = Callable[[ResourceType, KubeObject, KubeObject, str, bool], KubeObject]


class Deletions:
    """Deletes over a Store; `replace` stores an update (releasing a finalizer is one)."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        now: Callable[[], dt.datetime],
        on_removed: list[RemovedHook],
        replace: Replace,
    ) -> None:
        self.store = store
        self.registry = registry
        self.now = now
        self._on_removed = on_removed
        self._replace = replace

    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        options: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> KubeObject:
        """Delete; the object (or Success Status) to answer with, as the real server does."""
        ns = namespace if rt.namespaced else ""
        current = self.store.get_object(rt.group, rt.plural, ns, name)
        if current is None:
            raise errors.not_found(rt.group_resource, name)
        check_preconditions(rt, current, options or {})
        if dry_run:
            return current
        key = (rt.group, rt.plural)
        if key == NAMESPACES:
            return self._delete_namespace(current)
        if current["metadata"].get("finalizers"):
            if current["metadata"].get("deletionTimestamp"):
                return current
            marked = clone(current)
            marked["metadata"]["deletionTimestamp"] = rfc3339(self.now())
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            marked = self.store.put(rt.group, rt.plural, marked)
            return self._run_protection_controllers(rt, marked)
        final = self.remove(rt, current)
        if key in _RETURNS_DELETED:
            return final
        details = {"name": name, "kind": rt.plural, "uid": current["metadata"]["uid"]}
        if rt.group:
            details = {
                "name": name,
                "group": rt.group,
                "kind": rt.plural,
                "uid": current["metadata"]["uid"],
            }
        return errors.success_status(details)

    def _run_protection_controllers(self, rt: ResourceType, marked: KubeObject) -> KubeObject:
        """Drop the protection finalizers whose controllers would let go at once (nothing
        here uses a volume); the object goes when no other finalizer holds it."""
        finalizers = marked["metadata"].get("finalizers") or []
        kept = [f for f in finalizers if f not in _PROTECTION_FINALIZERS]
        if kept == finalizers:
            return marked
        released = clone(marked)
        released["metadata"]["finalizers"] = kept
        if not kept:
            del released["metadata"]["finalizers"]
        released["metadata"].pop("resourceVersion", None)
        return self._replace(rt, marked, released, "", False)

    def remove(self, rt: ResourceType, obj: KubeObject) -> KubeObject:
        meta = obj["metadata"]
        final = self.store.remove(rt.group, rt.plural, meta.get("namespace", ""), meta["name"])
        for hook in self._on_removed:
            hook(rt, obj)
        if (rt.group, rt.plural) == CRDS:
            self._drop_custom_resources(obj)
        elif (rt.group, rt.plural) == NODES:
            self._collect_node_lease(obj)
        namespace = meta.get("namespace", "")
        if namespace and rt.namespaced:
            ns = self.store.get_object("", "namespaces", "", namespace)
            if ns is not None and ns["metadata"].get("deletionTimestamp"):
                self._finalize_namespace(ns)
        return final if final is not None else obj

    def _collect_node_lease(self, node: KubeObject) -> None:
        """The garbage collector deletes the Lease its node owned."""
        namespace, name = kubelet.NODE_LEASE_NAMESPACE, node["metadata"]["name"]
        lease = self.store.get_object("coordination.k8s.io", "leases", namespace, name)
        if lease is not None and kubelet.owned_by(lease, node):
            self.store.remove("coordination.k8s.io", "leases", namespace, name)

    def _drop_custom_resources(self, crd: KubeObject) -> None:
        spec = crd.get("spec", {})
        group, plural = spec.get("group", ""), spec.get("names", {}).get("plural", "")
        for obj in list(self.store.list_objects(group, plural)):
            meta = obj["metadata"]
            self.store.remove(group, plural, meta.get("namespace", ""), meta["name"])
        self.registry.remove_crd(crd)

    def _delete_namespace(self, ns: KubeObject) -> KubeObject:
        if ns["metadata"].get("deletionTimestamp"):
            return ns
        marked = clone(ns)
        marked["metadata"]["deletionTimestamp"] = rfc3339(self.now())
        marked["status"] = {**marked.get("status", {}), "phase": "Terminating"}
        terminating = self.store.put("", "namespaces", marked)
        name = ns["metadata"]["name"]
        for rt in self._storage_types():
            if not rt.namespaced:
                continue
            for obj in list(self.store.list_objects(rt.group, rt.plural, name)):
                self.delete(rt, name, obj["metadata"]["name"])
        current = self.store.get_object("", "namespaces", "", name)
        if current is not None:
            self._finalize_namespace(current)
        return terminating

    def _storage_types(self) -> list[ResourceType]:
        seen: dict[tuple[str, str], ResourceType] = {}
        for rt in self.registry.all():
            seen.setdefault((rt.group, rt.plural), rt)
        return list(seen.values())

    def _finalize_namespace(self, ns: KubeObject) -> None:
        """Remove a Terminating namespace once nothing is left in it (the namespace controller)."""
        name = ns["metadata"]["name"]
        for rt in self._storage_types():
            if rt.namespaced and self.store.list_objects(rt.group, rt.plural, name):
                return
        now = rfc3339(self.now())
        done = clone(ns)
        done["status"]["conditions"] = [
            {"type": t, "status": "False", "lastTransitionTime": now, "reason": r, "message": m}
            for t, r, m in _NS_CONDITIONS
        ]
        self.store.put("", "namespaces", done)
        self.store.remove("", "namespaces", "", name)


_NS_CONDITIONS = (
    (
        "NamespaceDeletionDiscoveryFailure",
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        "NamespaceDeletionGroupVersionParsingFailure",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    ("NamespaceContentRemaining", "ContentRemoved", "All content successfully removed"),
    (
        "NamespaceFinalizersRemaining",
        "ContentHasNoFinalizers",
        "All content-preserving finalizers finished",
    ),
)
