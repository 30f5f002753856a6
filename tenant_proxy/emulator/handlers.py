"""The verbs: get, list, create, update, patch, delete, deletecollection, and watch filtering.

`Cluster` applies the real server's rules on top of the store (defaults, names, optimistic
concurrency, namespace lifecycle, finalizers, CRD registration) and raises `StatusError`s with
the real messages. No aiohttp here: app.py moves bytes between these and the sockets.
"""

from __future__ import annotations

import bisect
import datetime as dt
import secrets
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import yaml

from tenant_proxy.emulator import errors, kubelet, patch, validation
from tenant_proxy.emulator.clock import rfc3339
from tenant_proxy.emulator.defaults import apply_defaults
from tenant_proxy.emulator.errors import StatusError
from tenant_proxy.emulator.listing import (
    ListOptions,
    decode_continue,
    encode_continue,
    matcher,
    strip_type,
)
from tenant_proxy.emulator.resources import Registry
from tenant_proxy.emulator.seed import LAST_APPLIED
from tenant_proxy.emulator.store import Store, TooOld, object_key
from tenant_proxy.emulator.types import KubeObject, ResourceType

_NS = ("", "namespaces")
_NODE = ("", "nodes")
_CRD = ("apiextensions.k8s.io", "customresourcedefinitions")
# Resources whose DELETE answers with the object rather than a Success Status.
_RETURNS_DELETED = {_NS, ("", "pods"), ("", "services"), _CRD}
# Finalizers whose controllers (PV/PVC protection) release objects nothing is using.
_PROTECTION_FINALIZERS = ("kubernetes.io/pv-protection", "kubernetes.io/pvc-protection")
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted between "
    "the time the first chunk was returned and now may show up in the list."
)


def clone(obj: Any) -> Any:
    """A deep copy (orjson round trip: much faster than copy.deepcopy for JSON values)."""
    return orjson.loads(orjson.dumps(obj))


# --- the cluster ---------------------------------------------------------------------------------


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
        self.on_removed: list[Callable[[ResourceType, KubeObject], None]] = []
        """Called after an object is gone from the store (streams close pod logs)."""

    # --- reads ---

    def get(self, rt: ResourceType, namespace: str, name: str) -> KubeObject:
        obj = self.store.get_object(rt.group, rt.plural, namespace, name)
        if obj is None:
            raise errors.not_found(rt.group_resource, name)
        return obj

    def _snapshot(
        self, rt: ResourceType, namespace: str, opts: ListOptions
    ) -> tuple[int, list[KubeObject], str]:
        ns = namespace if rt.namespaced else None
        current = self.store.resource_version
        if opts.continue_token:
            rv, start = decode_continue(opts.continue_token)
            try:
                return rv, self.store.state_at(rt.group, rt.plural, ns, rv), start
            except TooOld:
                raise errors.expired(_CONTINUE_EXPIRED) from None
        rv_text = opts.resource_version
        if rv_text in ("", "0"):
            return current, self.store.list_objects(rt.group, rt.plural, ns), ""
        try:
            asked = int(rv_text)
        except ValueError:
            raise errors.bad_request(f"invalid resource version: {rv_text}") from None
        if asked > current:
            raise StatusError(
                504,
                "Timeout",
                f"Too large resource version: {asked}, current: {current}",
                {
                    "causes": [
                        {
                            "reason": "ResourceVersionTooLarge",
                            "message": "Too large resource version",
                        }
                    ],
                    "retryAfterSeconds": 1,
                },
            )
        if opts.rv_match == "Exact":
            try:
                return asked, self.store.state_at(rt.group, rt.plural, ns, asked), ""
            except TooOld:
                raise errors.expired() from None
        return current, self.store.list_objects(rt.group, rt.plural, ns), ""

    def list_page(
        self, rt: ResourceType, namespace: str, opts: ListOptions
    ) -> tuple[list[KubeObject], dict[str, Any]]:
        """(items, list metadata) for one page, from a consistent snapshot."""
        rv, objects, start = self._snapshot(rt, namespace, opts)
        # resourceVersion=0 is served from the watch cache, which does not paginate.
        limit = 0 if opts.resource_version == "0" and not opts.continue_token else opts.limit
        prefix = f"{namespace}/" if rt.namespaced and namespace else ""
        matches = matcher(rt, opts)
        items: list[KubeObject] = []
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        # Objects come in key order: a page starts where its key does, as etcd's range read
        # does (a scan from the first object would make paging quadratic).
        first = bisect.bisect_left(objects, start, key=lambda o: object_key(o)[len(prefix) :])
        for index in range(first, len(objects)):
            obj = objects[index]
            if not matches(obj):
                continue
            if limit and len(items) == limit:
                if opts.has_selector:
                    more = any(matches(o) for o in objects[index:])
                    remaining = None
                else:
                    more, remaining = True, len(objects) - index
                if more:
                    last = object_key(items[-1])[len(prefix) :]
                    meta["continue"] = encode_continue(rv, last + "\x00")
                    if remaining is not None:
                        meta["remainingItemCount"] = remaining
                break
            items.append(obj)
        return items, meta

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

    def _body(self, rt: ResourceType, body: Any) -> KubeObject:
        if not isinstance(body, dict):
            raise errors.bad_request(
                f"Object 'Kind' is missing in '{orjson.dumps(body).decode()[:200]}'"
            )
        kind = body.get("kind")
        if kind and kind != rt.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )
        api_version = body.get("apiVersion")
        if api_version and api_version != rt.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rt.api_version})"
            )
        obj: KubeObject = clone(body)
        if not isinstance(obj.get("metadata"), dict):
            obj["metadata"] = {}
        return obj

    def create(
        self, rt: ResourceType, namespace: str, body: Any, dry_run: bool = False
    ) -> KubeObject:
        obj = self._body(rt, body)
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
        obj = _ordered(obj)
        if dry_run:
            return obj
        stored = self.store.put(rt.group, rt.plural, obj)
        self._after_create(rt, stored)
        return stored

    def _after_create(self, rt: ResourceType, obj: KubeObject) -> None:
        key = (rt.group, rt.plural)
        if key == _CRD:
            self.registry.add_crd(obj)
        elif key == _NS:
            # The service account controller gives every namespace its "default" account.
            sa = self.registry.lookup("", "v1", "serviceaccounts")
            if sa is not None:
                ns = obj["metadata"]["name"]
                self.create(sa, ns, {"metadata": {"name": "default"}})
        elif key == _NODE:
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

    def _collect_node_lease(self, node: KubeObject) -> None:
        """The garbage collector deletes the Lease its node owned."""
        namespace, name = kubelet.NODE_LEASE_NAMESPACE, node["metadata"]["name"]
        lease = self.store.get_object("coordination.k8s.io", "leases", namespace, name)
        if lease is not None and kubelet.owned_by(lease, node):
            self.store.remove("coordination.k8s.io", "leases", namespace, name)

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
        obj = self._body(rt, body)
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
            _keep_cluster_ip(current, obj)
        apply_defaults(rt, obj, rfc3339(self.now()), self._serial, creating=False)
        obj = _ordered(obj)
        if obj == current or dry_run:
            return obj
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            # The update that lets go of the last finalizer is stored, then the object goes.
            return self._remove(rt, self.store.put(rt.group, rt.plural, obj))
        stored = self.store.put(rt.group, rt.plural, obj)
        if (rt.group, rt.plural) == _CRD:
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
        return self._replace(rt, current, self._body(rt, patched), subresource, dry_run)

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
        stored = self.store.put(rt.group, rt.plural, _ordered(scaled))
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
        current = self.get(rt, ns, name)
        _check_preconditions(rt, current, options or {})
        if dry_run:
            return current
        key = (rt.group, rt.plural)
        if key == _NS:
            return self._delete_namespace(current)
        if current["metadata"].get("finalizers"):
            if current["metadata"].get("deletionTimestamp"):
                return current
            marked = clone(current)
            marked["metadata"]["deletionTimestamp"] = rfc3339(self.now())
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            marked = self.store.put(rt.group, rt.plural, marked)
            return self._run_protection_controllers(rt, marked)
        final = self._remove(rt, current)
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

    def _remove(self, rt: ResourceType, obj: KubeObject) -> KubeObject:
        meta = obj["metadata"]
        final = self.store.remove(rt.group, rt.plural, meta.get("namespace", ""), meta["name"])
        for hook in self.on_removed:
            hook(rt, obj)
        if (rt.group, rt.plural) == _CRD:
            self._drop_custom_resources(obj)
        elif (rt.group, rt.plural) == _NODE:
            self._collect_node_lease(obj)
        namespace = meta.get("namespace", "")
        if namespace and rt.namespaced:
            ns = self.store.get_object("", "namespaces", "", namespace)
            if ns is not None and ns["metadata"].get("deletionTimestamp"):
                self._finalize_namespace(ns)
        return final if final is not None else obj

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
        previous = self._applied.get(key) or _last_applied(existing)
        merged = patch.merge_patch(clone(existing), patch.three_way_patch(previous, clone(obj)))
        merged["metadata"].pop("resourceVersion", None)
        updated = self.update(rt, ns, name, merged)
        self._applied[key] = clone(obj)
        return updated


def _last_applied(obj: KubeObject) -> Any:
    """The manifest kubectl recorded on the object, if any."""
    text = (obj["metadata"].get("annotations") or {}).get(LAST_APPLIED)
    try:
        return orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        return None


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

_TOP_ORDER = ("kind", "apiVersion", "metadata")
_META_ORDER = (
    "name",
    "generateName",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
)


def _ordered(obj: KubeObject) -> KubeObject:
    """Keys in the order the real server serialises them (kind, apiVersion, metadata, ...)."""
    meta = obj.get("metadata", {})
    ordered_meta = {k: meta[k] for k in _META_ORDER if k in meta}
    ordered_meta.update({k: v for k, v in meta.items() if k not in ordered_meta})
    out = {k: obj[k] for k in _TOP_ORDER if k in obj}
    out["metadata"] = ordered_meta
    out.update({k: v for k, v in obj.items() if k not in out})
    return out


def scale_of(obj: KubeObject) -> KubeObject:
    """An autoscaling/v1 Scale of a scalable object."""
    meta = obj["metadata"]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    labels = ((spec.get("selector") or {}).get("matchLabels")) or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": spec.get("replicas", 1)},
        "status": {
            "replicas": status.get("replicas", spec.get("replicas", 1)),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        },
    }


def _keep_cluster_ip(current: KubeObject, obj: KubeObject) -> None:
    """An update that leaves out the allocated cluster IP keeps it, as the real server does."""
    spec, before = obj.setdefault("spec", {}), current.get("spec", {})
    for key in ("clusterIP", "clusterIPs"):
        if key in before and not spec.get(key):
            spec[key] = before[key]


def _check_preconditions(rt: ResourceType, current: KubeObject, options: Mapping[str, Any]) -> None:
    pre = options.get("preconditions") or {}
    meta = current["metadata"]
    if pre.get("uid") and pre["uid"] != meta.get("uid"):
        raise StatusError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {rt.group_resource} "{meta["name"]}": '
            "Precondition failed: "
            f"UID in precondition: {pre['uid']}, UID in object meta: {meta.get('uid')}",
            {"name": meta["name"], "kind": rt.plural},
        )
    if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
        raise StatusError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {rt.group_resource} "{meta["name"]}": '
            "Precondition failed: "
            f"ResourceVersion in precondition: {pre['resourceVersion']}, "
            "ResourceVersion in object meta: "
            f"{meta.get('resourceVersion')}",
            {"name": meta["name"], "kind": rt.plural},
        )


def parse_json(body: bytes) -> Any:
    """A request body as JSON or YAML; 400 BadRequest when it is neither."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        doc = yaml.safe_load(body)
    except yaml.YAMLError as exc:
        raise errors.bad_request(f"error decoding body: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise errors.bad_request("error decoding body: nested too deeply") from None
    if not isinstance(doc, (dict, list)):
        raise errors.bad_request(
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json, application/yaml, application/vnd.kubernetes.protobuf"
        )
    return doc
