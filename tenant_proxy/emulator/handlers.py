"""The verbs: get, list, create, update, patch, delete, deletecollection, and apply.

`Cluster` applies the real server's rules on top of the store (defaults, names, optimistic
concurrency, namespace lifecycle, finalizers, CRD registration) and raises `StatusError`s with
the real messages. No aiohttp here: app.py moves bytes between these and the sockets.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from tenant_proxy.emulator import errors, kubelet, list_pages, patch, validation
from tenant_proxy.emulator.clock import rfc3339
from tenant_proxy.emulator.defaults import apply_defaults
from tenant_proxy.emulator.deletion import Deletions, RemovedHook
from tenant_proxy.emulator.errors import StatusError
from tenant_proxy.emulator.listing import ListOptions, strip_type
from tenant_proxy.emulator.objects import (
    CRDS,
    NAMESPACES,
    NODES,
    checked_body,
    clone,
    keep_cluster_ip,
    last_applied_manifest,
    ordered,
    parse_json,
    scale_of,
)
from tenant_proxy.emulator.resources import Registry
from tenant_proxy.emulator.store import Store
from tenant_proxy.emulator.types import KubeObject, ResourceType

_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Cluster:
    """The API's semantics over a Store and a Registry."""

    def __init__(
        self, store: Store, registry: Registry, now: Callable[[], dt.datetime] = _now
    ) -> None:
        self.store = store
        self.registry = registry
        self.now = now
        self._serial = 0
        self._applied: dict[tuple[str, str, str, str], KubeObject] = {}
        self.on_removed: list[RemovedHook] = []
        """Called after an object is gone from the store (streams close pod logs)."""
        self._deletions = Deletions(store, registry, now, self.on_removed, self._replace)

    # --- reads ---

    def get(self, rt: ResourceType, namespace: str, name: str) -> KubeObject:
        obj = self.store.get_object(rt.group, rt.plural, namespace, name)
        if obj is None:
            raise errors.not_found(rt.group_resource, name)
        return obj

    def list_page(
        self, rt: ResourceType, namespace: str, opts: ListOptions
    ) -> tuple[list[KubeObject], dict[str, Any]]:
        """(items, list metadata) for one page, from a consistent snapshot."""
        return list_pages.list_page(self.store, rt, namespace, opts)

    # --- writes ---

    def _check_namespace(self, rt: ResourceType, namespace: str, name: str) -> None:
        if not rt.namespaced:
            return
        ns = self.store.get_object("", "namespaces", "", namespace)
        if ns is None:
            raise errors.not_found("namespaces", namespace)
        if ns.get("metadata", {}).get("deletionTimestamp"):
            message = (
                f"unable to create new content in namespace {namespace} "
                "because it is being terminated"
            )
            subject = f'{rt.group_resource} "{name}"' if name else rt.group_resource
            details: dict[str, Any] = {"name": name} if name else {}
            if rt.group:
                details["group"] = rt.group
            details["kind"] = rt.plural
            details["causes"] = [
                {
                    "reason": "NamespaceTerminating",
                    "message": f"namespace {namespace} is being terminated",
                    "field": "metadata.namespace",
                }
            ]
            raise StatusError(403, "Forbidden", f"{subject} is forbidden: {message}", details)

    def create(
        self, rt: ResourceType, namespace: str, body: Any, dry_run: bool = False
    ) -> KubeObject:
        obj = checked_body(rt, body)
        meta = obj["metadata"]
        validation.validate_namespace_field(rt, obj, namespace)
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))
            meta["name"] = f"{meta['generateName']}{suffix}"
        validation.validate_name(rt, obj)
        name = str(meta["name"])
        if self.store.get_object(rt.group, rt.plural, namespace if rt.namespaced else "", name):
            raise errors.already_exists(rt, name)
        self._check_namespace(rt, namespace, name)
        now = rfc3339(self.now())
        obj = {"kind": rt.kind, "apiVersion": rt.api_version, **obj}
        obj["kind"], obj["apiVersion"] = rt.kind, rt.api_version
        meta = obj["metadata"]
        for key in (
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ):
            meta.pop(key, None)
        meta["resourceVersion"] = "0"  # a placeholder that keeps its place in key order
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now
        if rt.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        self._serial += 1
        apply_defaults(rt, obj, now, self._serial)
        obj = ordered(obj)
        if dry_run:
            return obj
        stored = self.store.put(rt.group, rt.plural, obj)
        self._after_create(rt, stored)
        return stored

    def _after_create(self, rt: ResourceType, obj: KubeObject) -> None:
        key = (rt.group, rt.plural)
        if key == CRDS:
            self.registry.add_crd(obj)
        elif key == NAMESPACES:
            # The service account controller gives every namespace its "default" account.
            sa = self.registry.lookup("", "v1", "serviceaccounts")
            if sa is not None:
                ns = obj["metadata"]["name"]
                self.create(sa, ns, {"metadata": {"name": "default"}})
        elif key == NODES:
            self._register_node_lease(obj)

    def _register_node_lease(self, node: KubeObject) -> None:
        """The node's kubelet creates its Lease on its first heartbeat."""
        leases = self.registry.lookup("coordination.k8s.io", "v1", "leases")
        namespace = kubelet.NODE_LEASE_NAMESPACE
        name = node["metadata"]["name"]
        if leases is None or self.store.get_object("", "namespaces", "", namespace) is None:
            return
        if self.store.get_object(leases.group, leases.plural, namespace, name) is None:
            self.create(leases, namespace, kubelet.node_lease(node, self.now()))

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        subresource: str = "",
        dry_run: bool = False,
    ) -> KubeObject:
        ns = namespace if rt.namespaced else ""
        current = self.get(rt, ns, name)
        obj = checked_body(rt, body)
        meta = obj["metadata"]
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({name})"
            )
        validation.validate_namespace_field(rt, obj, namespace)
        asked_rv = meta.get("resourceVersion")
        if asked_rv and asked_rv != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, name)
        return self._replace(rt, current, obj, subresource, dry_run)

    def _replace(
        self,
        rt: ResourceType,
        current: KubeObject,
        obj: KubeObject,
        subresource: str,
        dry_run: bool,
    ) -> KubeObject:
        cur_meta = current["metadata"]
        if subresource == "status":
            obj = {**current, "status": obj.get("status", {})}
        elif "status" in current and "status" in rt.subresources:
            obj["status"] = current["status"]
        obj["kind"], obj["apiVersion"] = current["kind"], current["apiVersion"]
        meta = {**obj.get("metadata", {})}
        for key in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generateName",
        ):
            if key in cur_meta:
                meta[key] = cur_meta[key]
            else:
                meta.pop(key, None)
        meta["resourceVersion"] = cur_meta["resourceVersion"]
        obj["metadata"] = meta
        if (rt.group, rt.plural) == ("", "services"):
            keep_cluster_ip(current, obj)
        apply_defaults(rt, obj, rfc3339(self.now()), self._serial, creating=False)
        obj = ordered(obj)
        if obj == current or dry_run:
            return obj
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            # The update that lets go of the last finalizer is stored, then the object goes.
            return self._deletions.remove(rt, self.store.put(rt.group, rt.plural, obj))
        stored = self.store.put(rt.group, rt.plural, obj)
        if (rt.group, rt.plural) == CRDS:
            self.registry.add_crd(stored)
        return stored

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        body: bytes,
        subresource: str = "",
        dry_run: bool = False,
    ) -> KubeObject:
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in (patch.MERGE, patch.JSON_PATCH, patch.STRATEGIC):
            raise errors.unsupported_media_type()
        if media == patch.STRATEGIC and self.registry.is_custom(rt):
            raise errors.unsupported_media_type()
        doc = parse_json(body)
        ns = namespace if rt.namespaced else ""
        current = self.get(rt, ns, name)
        try:
            patched = patch.apply_patch(media, clone(current), doc)
        except patch.PatchError as exc:
            raise StatusError(422, "Invalid", str(exc), {"name": name, "kind": rt.kind}) from None
        if not isinstance(patched, dict):
            raise errors.bad_request("the patched object is not a JSON object")
        meta = patched.get("metadata")
        asked_rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
        if asked_rv and asked_rv != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, name)
        if subresource != "status" and "status" in rt.subresources and "status" in current:
            patched["status"] = current["status"]
        return self._replace(rt, current, checked_body(rt, patched), subresource, dry_run)

    # --- the scale subresource (kubectl scale) ---

    def get_scale(self, rt: ResourceType, namespace: str, name: str) -> KubeObject:
        """The object's autoscaling/v1 Scale."""
        return scale_of(self.get(rt, namespace, name))

    def update_scale(self, rt: ResourceType, namespace: str, name: str, body: Any) -> KubeObject:
        if not isinstance(body, dict):
            raise errors.bad_request("the body must be a Scale object")
        current = self.get(rt, namespace, name)
        asked_rv = (body.get("metadata") or {}).get("resourceVersion")
        if asked_rv and asked_rv != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, name)
        replicas = (body.get("spec") or {}).get("replicas", 0)
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid(
                "Scale",
                name,
                [
                    {
                        "reason": "FieldValueInvalid",
                        "message": f"Invalid value: {replicas}: must be greater than or equal to 0",
                        "field": "spec.replicas",
                    }
                ],
            )
        scaled = clone(current)
        scaled.setdefault("spec", {})["replicas"] = replicas
        scaled.setdefault("status", {})["replicas"] = replicas
        scaled["metadata"].pop("resourceVersion", None)
        stored = self.store.put(rt.group, rt.plural, ordered(scaled))
        return scale_of(stored)

    def patch_scale(
        self, rt: ResourceType, namespace: str, name: str, content_type: str, body: bytes
    ) -> KubeObject:
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in (patch.MERGE, patch.JSON_PATCH, patch.STRATEGIC):
            raise errors.unsupported_media_type()
        try:
            scale = patch.apply_patch(media, self.get_scale(rt, namespace, name), parse_json(body))
        except patch.PatchError as exc:
            raise StatusError(422, "Invalid", str(exc), {"name": name, "kind": "Scale"}) from None
        return self.update_scale(rt, namespace, name, scale)

    # --- deletes ---

    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        options: Mapping[str, Any] | None = None,
        dry_run: bool = False,
    ) -> KubeObject:
        """Delete; the object (or Success Status) to answer with, as the real server does."""
        return self._deletions.delete(rt, namespace, name, options, dry_run)

    def delete_collection(
        self, rt: ResourceType, namespace: str, opts: ListOptions, dry_run: bool = False
    ) -> dict[str, Any]:
        items, _ = self.list_page(
            rt,
            namespace,
            ListOptions(labels=opts.labels, fields=opts.fields, has_selector=opts.has_selector),
        )
        deleted = []
        for obj in items:
            ns = obj["metadata"].get("namespace", "")
            result = self.delete(rt, ns, obj["metadata"]["name"], dry_run=dry_run)
            deleted.append(result if result.get("kind") != "Status" else obj)
        return {
            "kind": rt.list_kind,
            "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": str(self.store.resource_version)},
            "items": [strip_type(o) for o in deleted],
        }

    # --- in-process helpers ---

    def apply(self, obj: KubeObject) -> KubeObject:
        """Create or update an object by its apiVersion/kind, as `kubectl apply` would.

        Fields the previous apply set and this one drops are removed; fields others set
        (defaults, finalizers, status) stay.
        """
        rt = self.registry.by_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        if rt is None:
            raise errors.bad_request(f"no resource for {obj.get('apiVersion')} {obj.get('kind')}")
        meta = obj.get("metadata") or {}
        ns = str(meta.get("namespace") or ("default" if rt.namespaced else ""))
        name = str(meta.get("name", ""))
        existing = self.store.get_object(rt.group, rt.plural, ns if rt.namespaced else "", name)
        key = (rt.group, rt.plural, ns, name)
        if existing is None:
            created = self.create(rt, ns, obj)
            self._applied[key] = clone(obj)
            return created
        previous = self._applied.get(key) or last_applied_manifest(existing)
        merged = patch.merge_patch(clone(existing), patch.three_way_patch(previous, clone(obj)))
        merged["metadata"].pop("resourceVersion", None)
        updated = self.update(rt, ns, name, merged)
        self._applied[key] = clone(obj)
        return updated
