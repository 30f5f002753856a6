"""Rules about objects that need no store: a request body checked against its type, the key
order the real server writes, the Scale view, delete preconditions, JSON/YAML bodies. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import yaml

from tenant_proxy.emulator import errors
from tenant_proxy.emulator.errors import StatusError
from tenant_proxy.emulator.seed import LAST_APPLIED
from tenant_proxy.emulator.types import KubeObject, ResourceType

NAMESPACES = ("", "namespaces")
NODES = ("", "nodes")
CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")


def clone(obj: Any) -> Any:
    """A deep copy (orjson round trip: much faster than copy.deepcopy for JSON values)."""
    return orjson.loads(orjson.dumps(obj))


def checked_body(rt: ResourceType, body: Any) -> KubeObject:
    """A write's body, a copy, when its kind and apiVersion (if given) are `rt`'s."""
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


def last_applied_manifest(obj: KubeObject) -> Any:
    """The manifest kubectl recorded on the object, if any."""
    text = (obj["metadata"].get("annotations") or {}).get(LAST_APPLIED)
    try:
        return orjson.loads(text) if text else None
    except orjson.JSONDecodeError:
        return None


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


def ordered(obj: KubeObject) -> KubeObject:
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


def keep_cluster_ip(current: KubeObject, obj: KubeObject) -> None:
    """An update that leaves out the allocated cluster IP keeps it, as the real server does."""
    spec, before = obj.setdefault("spec", {}), current.get("spec", {})
    for key in ("clusterIP", "clusterIPs"):
        if key in before and not spec.get(key):
            spec[key] = before[key]


def check_preconditions(rt: ResourceType, current: KubeObject, options: Mapping[str, Any]) -> None:
    """A DeleteOptions' uid / resourceVersion preconditions: 409 Conflict when one differs."""
    pre = options.get("preconditions") or {}
    meta = current["metadata"]
    for key, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
        if pre.get(key) and pre[key] != meta.get(key):
            raise StatusError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {rt.group_resource} "{meta["name"]}": '
                f"Precondition failed: {label} in precondition: {pre[key]}, "
                f"{label} in object meta: {meta.get(key)}",
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
