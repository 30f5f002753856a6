"""Printers of cluster-scoped kinds and their neighbours: namespaces, nodes, persistent volumes
and claims, storage, ingress, priority and runtime classes, leases, RBAC bindings, metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from tenant_proxy.emulator import metrics
from tenant_proxy.emulator.printer import (
    Printer,
    age_of,
    columns,
    deleting,
    dig,
    field,
    meta,
    name_of,
    or_else,
    simple,
)
from tenant_proxy.emulator.types import KubeObject


def _namespace_cells(obj: KubeObject, now: datetime) -> list[Any]:
    return [name_of(obj), dig(obj, "status", "phase", default=""), age_of(obj, now)]


NAMESPACE_PRINTER = Printer(columns("namespaces"), _namespace_cells)


def node_status(obj: KubeObject) -> str:
    """`Ready` / `NotReady` from the Ready condition, `Unknown` without one, plus cordoning."""
    ready = [c for c in dig(obj, "status", "conditions", default=[]) if c.get("type") == "Ready"]
    # Later conditions of a type override earlier ones, as in the printer's condition map.
    states = ["Unknown"]
    if ready:
        states = ["Ready" if ready[-1].get("status") == "True" else "NotReady"]
    if dig(obj, "spec", "unschedulable", default=False):
        states.append("SchedulingDisabled")
    return ",".join(states)


def node_roles(obj: KubeObject) -> str:
    """Roles from `node-role.kubernetes.io/<role>` labels and the `kubernetes.io/role` label."""
    roles: set[str] = set()
    for key, value in (meta(obj).get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/"):
            role = key.removeprefix("node-role.kubernetes.io/")
            if role:
                roles.add(role)
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(roles)) or "<none>"


def _node_address(obj: KubeObject, kind: str) -> str:
    for address in dig(obj, "status", "addresses", default=[]):
        if address.get("type") == kind:
            return str(address.get("address", ""))
    return "<none>"


def _node_cells(obj: KubeObject, now: datetime) -> list[Any]:
    info = dig(obj, "status", "nodeInfo", default={})
    return [
        name_of(obj),
        node_status(obj),
        node_roles(obj),
        age_of(obj, now),
        info.get("kubeletVersion", ""),
        _node_address(obj, "InternalIP"),
        _node_address(obj, "ExternalIP"),
        or_else(info.get("osImage"), "<unknown>"),
        or_else(info.get("kernelVersion"), "<unknown>"),
        or_else(info.get("containerRuntimeVersion"), "<unknown>"),
    ]


NODE_PRINTER = Printer(columns("nodes"), _node_cells)


_ACCESS_MODES = (
    ("ReadWriteOnce", "RWO"),
    ("ReadOnlyMany", "ROX"),
    ("ReadWriteMany", "RWX"),
    ("ReadWriteOncePod", "RWOP"),
)
_BETA_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"


def access_modes(modes: Sequence[str] | None) -> str:
    """helper.GetAccessModesAsString: abbreviations in a fixed order, without duplicates."""
    present = set(modes or ())
    return ",".join(short for mode, short in _ACCESS_MODES if mode in present)


def _storage_class(obj: KubeObject) -> str:
    # The beta annotation still wins over the field, as in helper.GetPersistentVolumeClass.
    annotations = meta(obj).get("annotations") or {}
    if _BETA_CLASS_ANNOTATION in annotations:
        return str(annotations[_BETA_CLASS_ANNOTATION])
    return str(dig(obj, "spec", "storageClassName", default=""))


def _phase(obj: KubeObject) -> str:
    return "Terminating" if deleting(obj) else str(dig(obj, "status", "phase", default=""))


def pv_claim(obj: KubeObject) -> str:
    """`namespace/name` of the claimRef, or empty."""
    ref = dig(obj, "spec", "claimRef")
    if not isinstance(ref, Mapping):
        return ""
    return f"{ref.get('namespace', '')}/{ref.get('name', '')}"


def _pv_cells(obj: KubeObject, now: datetime) -> list[Any]:
    return [
        name_of(obj),
        str(dig(obj, "spec", "capacity", "storage", default="0")),
        access_modes(dig(obj, "spec", "accessModes")),
        str(dig(obj, "spec", "persistentVolumeReclaimPolicy", default="")),
        _phase(obj),
        pv_claim(obj),
        _storage_class(obj),
        str(dig(obj, "status", "reason", default="")),
        age_of(obj, now),
        str(dig(obj, "spec", "volumeMode", default="<unset>")),
    ]


PV_PRINTER = Printer(columns("persistentvolumes"), _pv_cells)


def _pvc_cells(obj: KubeObject, now: datetime) -> list[Any]:
    volume = str(dig(obj, "spec", "volumeName", default=""))
    bound = bool(volume)
    return [
        name_of(obj),
        _phase(obj),
        volume,
        str(dig(obj, "status", "capacity", "storage", default="0")) if bound else "",
        access_modes(dig(obj, "status", "accessModes")) if bound else "",
        _storage_class(obj),
        age_of(obj, now),
        str(dig(obj, "spec", "volumeMode", default="<unset>")),
    ]


PVC_PRINTER = Printer(columns("persistentvolumeclaims"), _pvc_cells)

_DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)


def storage_class_name(obj: KubeObject) -> str:
    """The name, marked ` (default)` by the is-default-class annotation."""
    annotations = meta(obj).get("annotations") or {}
    default = any(annotations.get(key) == "true" for key in _DEFAULT_CLASS_ANNOTATIONS)
    return name_of(obj) + (" (default)" if default else "")


def _storage_class_cells(obj: KubeObject, now: datetime) -> list[Any]:
    return [
        storage_class_name(obj),
        str(obj.get("provisioner", "")),
        str(or_else(obj.get("reclaimPolicy"), "Delete")),
        str(or_else(obj.get("volumeBindingMode"), "Immediate")),
        bool(obj.get("allowVolumeExpansion") or False),
        age_of(obj, now),
    ]


STORAGE_CLASS_PRINTER = Printer(columns("storageclasses.storage.k8s.io"), _storage_class_cells)


def _ingress_class_parameters(obj: KubeObject) -> str:
    params = dig(obj, "spec", "parameters")
    if not isinstance(params, Mapping):
        return "<none>"
    group = f".{params['apiGroup']}" if params.get("apiGroup") else ""
    return f"{params.get('kind', '')}{group}/{params.get('name', '')}"


INGRESS_CLASS_PRINTER = simple(
    "ingressclasses.networking.k8s.io", field("spec", "controller"), _ingress_class_parameters
)
PRIORITY_CLASS_PRINTER = simple(
    "priorityclasses.scheduling.k8s.io",
    field("value", default=0),
    lambda obj: bool(obj.get("globalDefault") or False),
)
RUNTIME_CLASS_PRINTER = simple("runtimeclasses.node.k8s.io", field("handler"))
LEASE_PRINTER = simple("leases.coordination.k8s.io", field("spec", "holderIdentity"))


def subjects(obj: KubeObject) -> tuple[str, str, str]:
    """Users, groups and `namespace/name` service accounts of a binding, comma-separated."""
    users, groups, accounts = [], [], []
    for subject in obj.get("subjects") or []:
        kind, name = subject.get("kind"), str(subject.get("name", ""))
        if kind == "User":
            users.append(name)
        elif kind == "Group":
            groups.append(name)
        elif kind == "ServiceAccount":
            accounts.append(f"{subject.get('namespace', '')}/{name}")
    return ", ".join(users), ", ".join(groups), ", ".join(accounts)


def _binding_cells(obj: KubeObject, now: datetime) -> list[Any]:
    ref = obj.get("roleRef") or {}
    role = f"{ref.get('kind', '')}/{ref.get('name', '')}"
    return [name_of(obj), role, age_of(obj, now), *subjects(obj)]


ROLE_BINDING_PRINTER = Printer(columns("rolebindings.rbac.authorization.k8s.io"), _binding_cells)
CLUSTER_ROLE_BINDING_PRINTER = Printer(
    columns("clusterrolebindings.rbac.authorization.k8s.io"), _binding_cells
)

# metrics-server's convertor names its columns after the first row's usage keys: an empty
# Table has no columns.
NODE_METRICS_PRINTER = Printer(
    columns("nodes.metrics.k8s.io"), metrics.node_cells, columns_from_rows=True
)
POD_METRICS_PRINTER = Printer(
    columns("pods.metrics.k8s.io"), metrics.pod_cells, columns_from_rows=True
)

PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "namespaces"): NAMESPACE_PRINTER,
    ("", "nodes"): NODE_PRINTER,
    ("", "persistentvolumes"): PV_PRINTER,
    ("", "persistentvolumeclaims"): PVC_PRINTER,
    ("storage.k8s.io", "storageclasses"): STORAGE_CLASS_PRINTER,
    ("networking.k8s.io", "ingressclasses"): INGRESS_CLASS_PRINTER,
    ("scheduling.k8s.io", "priorityclasses"): PRIORITY_CLASS_PRINTER,
    ("node.k8s.io", "runtimeclasses"): RUNTIME_CLASS_PRINTER,
    ("coordination.k8s.io", "leases"): LEASE_PRINTER,
    ("rbac.authorization.k8s.io", "rolebindings"): ROLE_BINDING_PRINTER,
    ("rbac.authorization.k8s.io", "clusterrolebindings"): CLUSTER_ROLE_BINDING_PRINTER,
    (metrics.GROUP, "nodes"): NODE_METRICS_PRINTER,
    (metrics.GROUP, "pods"): POD_METRICS_PRINTER,
}
