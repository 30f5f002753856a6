"""`meta.k8s.io` Tables and PartialObjectMetadata, as kube-apiserver renders them.

Built-in kinds get the columns of kube-apiserver's printers (pkg/printers/internalversion), which
the server always runs in wide mode, so priority-1 columns carry cells too. Kinds without a
printer get the default convertor's `Name` / `Created At`; custom resources get their CRD's
additionalPrinterColumns (or `Age` when there are none).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tenant_proxy.emulator import clock, errors, metrics
from tenant_proxy.emulator.types import KubeObject, ResourceType

INCLUDE_OBJECT_VALUES = ("None", "Metadata", "Object")

NAME_DOC = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "http://kubernetes.io/docs/user-guide/identifiers#names"
)
CREATED_DOC = (
    "CreationTimestamp is a timestamp representing the server time when this object was "
    "created. It is not guaranteed to be set in happens-before order across separate "
    "operations. Clients may not set this value. It is represented in RFC3339 form and is in "
    "UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)


@dataclass(frozen=True)
class Column:
    """One TableColumnDefinition."""

    name: str
    description: str
    type: str = "string"
    format: str = ""
    priority: int = 0

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


NAME = Column("Name", NAME_DOC, format="name")
AGE = Column("Age", CREATED_DOC)
CREATED_AT = Column("Created At", CREATED_DOC, type="date")

Cells = Callable[[KubeObject, datetime], list[Any]]
RowConditions = Callable[[KubeObject], list[dict[str, str]]]


@dataclass(frozen=True)
class Printer:
    """The columns of a kind and how to fill one row."""

    columns: tuple[Column, ...]
    cells: Cells
    conditions: RowConditions | None = None
    columns_from_rows: bool = False  # an empty Table has no columns either (metrics-server)


def table_for(
    rt: ResourceType,
    objects: Sequence[KubeObject],
    *,
    include_object: str,
    version: str,
    list_meta: Mapping[str, Any],
    with_columns: bool,
    now: datetime,
    printer_columns: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A `meta.k8s.io/<version>` Table of `objects` (one object for a get or a watch event).

    `include_object` is the request's includeObject ("" means Metadata); an unknown value is a
    400. `with_columns=False` gives `"columnDefinitions": null`, as watch events after the first.
    `printer_columns` marks a custom resource: its CRD version's additionalPrinterColumns.
    """
    if include_object not in ("", *INCLUDE_OBJECT_VALUES):
        raise errors.bad_request(f'unrecognized includeObject value: "{include_object}"')
    printer = printer_for(rt, printer_columns)
    columns = [c.definition() for c in printer.columns] if with_columns else None
    rows: list[dict[str, Any]] | None = [
        _row(rt, printer, obj, include_object, version, now) for obj in objects
    ]
    if not rows and printer is DEFAULT_PRINTER:
        # The default convertor appends to a nil slice: an empty Table has `"rows": null`.
        rows = None
    if not rows and printer.columns_from_rows:
        columns, rows = None, None
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": dict(list_meta),
        "columnDefinitions": columns,
        "rows": rows,
    }


def _row(
    rt: ResourceType,
    printer: Printer,
    obj: KubeObject,
    include_object: str,
    version: str,
    now: datetime,
) -> dict[str, Any]:
    row: dict[str, Any] = {"cells": printer.cells(obj, now)}
    conditions = printer.conditions(obj) if printer.conditions else []
    if conditions:
        row["conditions"] = conditions
    row["object"] = _row_object(rt, obj, include_object, version)
    return row


def _row_object(
    rt: ResourceType, obj: KubeObject, include_object: str, version: str
) -> KubeObject | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        # Items of a list may be stored without their type; a row's object always has it.
        return {"kind": rt.kind, "apiVersion": rt.api_version, **obj}
    return partial_metadata(obj, version)


def partial_metadata(obj: KubeObject, version: str) -> dict[str, Any]:
    """The object reduced to its metadata, as `PartialObjectMetadata`."""
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": obj.get("metadata", {}),
    }


def partial_metadata_list(
    objs: Sequence[KubeObject], version: str, list_meta: Mapping[str, Any]
) -> dict[str, Any]:
    """A list answered as `PartialObjectMetadataList`."""
    return {
        "kind": "PartialObjectMetadataList",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": dict(list_meta),
        "items": [partial_metadata(obj, version) for obj in objs],
    }


def printer_for(
    rt: ResourceType, printer_columns: Sequence[Mapping[str, Any]] | None = None
) -> Printer:
    """The printer kube-apiserver uses for `rt`."""
    if printer_columns is not None:
        return custom_resource_printer(printer_columns)
    return PRINTERS.get((rt.group, rt.plural), DEFAULT_PRINTER)


def _default_cells(obj: KubeObject, now: datetime) -> list[Any]:
    meta = obj.get("metadata", {})
    created = clock.parse_timestamp(meta.get("creationTimestamp", ""))
    # Go formats a zero time as 0001-01-01T00:00:00Z.
    return [meta.get("name", ""), clock.rfc3339(created) if created else "0001-01-01T00:00:00Z"]


DEFAULT_PRINTER = Printer((NAME, CREATED_AT), _default_cells)


def custom_resource_printer(printer_columns: Sequence[Mapping[str, Any]]) -> Printer:
    """apiextensions' convertor: Name, then the CRD's columns (Age when it declares none)."""
    specs = list(printer_columns) or [
        {
            "name": "Age",
            "type": "date",
            "description": CREATED_DOC,
            "jsonPath": ".metadata.creationTimestamp",
        }
    ]
    columns = (NAME, *(_crd_column(s) for s in specs))

    def cells(obj: KubeObject, now: datetime) -> list[Any]:
        name = obj.get("metadata", {}).get("name", "")
        return [name, *(_crd_cell(s, obj, now) for s in specs)]

    return Printer(columns, cells)


def _crd_column(spec: Mapping[str, Any]) -> Column:
    return Column(
        name=str(spec.get("name", "")),
        description=str(spec.get("description", "")),
        type=str(spec.get("type", "string")),
        format=str(spec.get("format", "")),
        priority=int(spec.get("priority", 0)),
    )


def _crd_cell(spec: Mapping[str, Any], obj: KubeObject, now: datetime) -> Any:
    found, value = _json_path(obj, str(spec.get("jsonPath", "")))
    if not found or value is None:
        return None
    return _typed_cell(str(spec.get("type", "string")), value, now)


# --- custom resource cells -------------------------------------------------------------------


def _json_path(obj: Any, path: str) -> tuple[bool, Any]:
    """The first value a CRD column's simple JSONPath (`.a.b[0]`, `[?(@.k=="v")]`) selects."""
    current = obj
    for step in _path_steps(path.strip().removeprefix("{").removesuffix("}")):
        found, current = _step(current, step)
        if not found:
            return False, None
    return True, current


def _path_steps(path: str) -> list[str]:
    """`.a.b[0][?(@.c=="d")]` -> `a`, `b`, `[0]`, `[?(@.c=="d")]` (brackets kept whole)."""
    steps: list[str] = []
    rest = path
    while rest:
        if rest.startswith("["):
            end = rest.find("]")
            end = len(rest) - 1 if end < 0 else end
            steps.append(rest[: end + 1])
            rest = rest[end + 1 :]
            continue
        rest = rest.removeprefix(".")
        cut = min((i for i in (rest.find("."), rest.find("[")) if i >= 0), default=len(rest))
        if rest[:cut]:
            steps.append(rest[:cut])
        rest = rest[cut:]
    return steps


def _step(current: Any, step: str) -> tuple[bool, Any]:
    if step.startswith("[") and step.endswith("]"):
        return _index_step(current, step[1:-1])
    if isinstance(current, Mapping) and step in current:
        return True, current[step]
    return False, None


def _index_step(current: Any, selector: str) -> tuple[bool, Any]:
    if not isinstance(current, list):
        return False, None
    if selector.startswith("?(@.") and selector.endswith(")") and "==" in selector:
        key, _, wanted = selector[4:-1].partition("==")
        wanted = wanted.strip().strip("'\"")
        for item in current:
            if isinstance(item, Mapping) and str(item.get(key.strip())) == wanted:
                return True, item
        return False, None
    if selector.lstrip("-").isdigit() and -len(current) <= int(selector) < len(current):
        return True, current[int(selector)]
    return False, None


def _typed_cell(column_type: str, value: Any, now: datetime) -> Any:
    """apiextensions' cellForJSONValue: a value of the wrong type gives an empty (null) cell."""
    if column_type == "string":
        return value if isinstance(value, str) else _json_text(value)
    if column_type == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if column_type == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if column_type == "boolean" and isinstance(value, bool):
        return value
    if column_type == "date" and isinstance(value, str):
        return clock.age(value, now) if clock.parse_timestamp(value) else "<invalid>"
    return None


def _json_text(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return (
        json.dumps(value, separators=(",", ":")) if isinstance(value, dict | list) else str(value)
    )


# --- built-in printers -----------------------------------------------------------------------


def _meta(obj: KubeObject) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _get(obj: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(obj, Mapping) or key not in obj or obj[key] is None:
            return default
        obj = obj[key]
    return obj


def _name(obj: KubeObject) -> str:
    return str(_meta(obj).get("name", ""))


def _age(obj: KubeObject, now: datetime) -> str:
    return clock.age(str(_meta(obj).get("creationTimestamp", "") or ""), now)


def _deleting(obj: KubeObject) -> bool:
    return bool(_meta(obj).get("deletionTimestamp"))


def _or(value: Any, fallback: str) -> Any:
    return value if value not in (None, "") else fallback


def _format_labels(labels: Mapping[str, str] | None) -> str:
    """labels.FormatLabels: sorted `k=v` joined by commas, `<none>` when empty."""
    text = ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))
    return text or "<none>"


def _simple(columns: tuple[Column, ...], *fields: Callable[[KubeObject], Any]) -> Printer:
    """A printer whose row is the name, the given fields, then the age."""

    def cells(obj: KubeObject, now: datetime) -> list[Any]:
        return [_name(obj), *(f(obj) for f in fields), _age(obj, now)]

    return Printer((NAME, *columns, AGE), cells)


# namespaces


def _namespace_cells(obj: KubeObject, now: datetime) -> list[Any]:
    return [_name(obj), _get(obj, "status", "phase", default=""), _age(obj, now)]


NAMESPACE_PRINTER = Printer(
    (NAME, Column("Status", "The status of the namespace"), AGE), _namespace_cells
)

# nodes

_NODE_ADDRESSES_DOC = (
    "List of addresses reachable to the node. Queried from cloud provider, if available. More "
    "info: https://kubernetes.io/docs/concepts/nodes/node/#addresses Note: This field is "
    "declared as mergeable, but the merge key is not sufficiently unique, which can cause data "
    "corruption when it is merged. Callers should instead use a full-replacement patch. See "
    "http://pr.k8s.io/79391 for an example."
)
NODE_COLUMNS = (
    NAME,
    Column("Status", "The status of the node"),
    Column("Roles", "The roles of the node"),
    AGE,
    Column("Version", "Kubelet Version reported by the node."),
    Column("Internal-IP", _NODE_ADDRESSES_DOC, priority=1),
    Column("External-IP", _NODE_ADDRESSES_DOC, priority=1),
    Column(
        "OS-Image",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
        priority=1,
    ),
    Column(
        "Kernel-Version",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
        priority=1,
    ),
    Column(
        "Container-Runtime",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. "
        "docker://1.5.0).",
        priority=1,
    ),
)


def node_status(obj: KubeObject) -> str:
    """`Ready` / `NotReady` from the Ready condition, `Unknown` without one, plus cordoning."""
    ready = [c for c in _get(obj, "status", "conditions", default=[]) if c.get("type") == "Ready"]
    # Later conditions of a type override earlier ones, as in the printer's condition map.
    states = ["Unknown"]
    if ready:
        states = ["Ready" if ready[-1].get("status") == "True" else "NotReady"]
    if _get(obj, "spec", "unschedulable", default=False):
        states.append("SchedulingDisabled")
    return ",".join(states)


def node_roles(obj: KubeObject) -> str:
    """Roles from `node-role.kubernetes.io/<role>` labels and the `kubernetes.io/role` label."""
    roles: set[str] = set()
    for key, value in (_meta(obj).get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/"):
            role = key.removeprefix("node-role.kubernetes.io/")
            if role:
                roles.add(role)
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(roles)) or "<none>"


def _node_address(obj: KubeObject, kind: str) -> str:
    for address in _get(obj, "status", "addresses", default=[]):
        if address.get("type") == kind:
            return str(address.get("address", ""))
    return "<none>"


def _node_cells(obj: KubeObject, now: datetime) -> list[Any]:
    info = _get(obj, "status", "nodeInfo", default={})
    return [
        _name(obj),
        node_status(obj),
        node_roles(obj),
        _age(obj, now),
        info.get("kubeletVersion", ""),
        _node_address(obj, "InternalIP"),
        _node_address(obj, "ExternalIP"),
        _or(info.get("osImage"), "<unknown>"),
        _or(info.get("kernelVersion"), "<unknown>"),
        _or(info.get("containerRuntimeVersion"), "<unknown>"),
    ]


NODE_PRINTER = Printer(NODE_COLUMNS, _node_cells)

# persistentvolumes and claims

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
    annotations = _meta(obj).get("annotations") or {}
    if _BETA_CLASS_ANNOTATION in annotations:
        return str(annotations[_BETA_CLASS_ANNOTATION])
    return str(_get(obj, "spec", "storageClassName", default=""))


def _phase(obj: KubeObject) -> str:
    return "Terminating" if _deleting(obj) else str(_get(obj, "status", "phase", default=""))


PV_COLUMNS = (
    NAME,
    Column(
        "Capacity",
        "A description of the persistent volume's resources and capacity. More info: "
        "https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity",
    ),
    Column(
        "Access Modes",
        "AccessModes contains all ways the volume can be mounted. More info: "
        "https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes",
    ),
    Column(
        "Reclaim Policy",
        "What happens to a persistent volume when released from its claim. Valid options are "
        "Retain (default for manually created PersistentVolumes), Delete (default for "
        "dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be "
        "supported by the volume plugin underlying this PersistentVolume. More info: "
        "https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming",
    ),
    Column(
        "Status",
        "Phase indicates if a volume is available, bound to a claim, or released by a claim. "
        "More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase",
    ),
    Column(
        "Claim",
        "ClaimRef is part of a bi-directional binding between PersistentVolume and "
        "PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the "
        "authoritative bind between PV and PVC. More info: "
        "https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding",
    ),
    Column("StorageClass", "StorageClass of the pv"),
    Column(
        "Reason",
        "Reason is a brief CamelCase string that describes any failure and is meant for machine "
        "parsing and tidy display in the CLI.",
    ),
    AGE,
    Column(
        "VolumeMode",
        "volumeMode defines if a volume is intended to be used with a formatted filesystem or to "
        "remain in raw block state. Value of Filesystem is implied when not included in spec.",
        priority=1,
    ),
)


def pv_claim(obj: KubeObject) -> str:
    """`namespace/name` of the claimRef, or empty."""
    ref = _get(obj, "spec", "claimRef")
    if not isinstance(ref, Mapping):
        return ""
    return f"{ref.get('namespace', '')}/{ref.get('name', '')}"


def _pv_cells(obj: KubeObject, now: datetime) -> list[Any]:
    return [
        _name(obj),
        str(_get(obj, "spec", "capacity", "storage", default="0")),
        access_modes(_get(obj, "spec", "accessModes")),
        str(_get(obj, "spec", "persistentVolumeReclaimPolicy", default="")),
        _phase(obj),
        pv_claim(obj),
        _storage_class(obj),
        str(_get(obj, "status", "reason", default="")),
        _age(obj, now),
        str(_get(obj, "spec", "volumeMode", default="<unset>")),
    ]


PV_PRINTER = Printer(PV_COLUMNS, _pv_cells)

PVC_COLUMNS = (
    NAME,
    Column("Status", "phase represents the current phase of PersistentVolumeClaim."),
    Column(
        "Volume", "volumeName is the binding reference to the PersistentVolume backing this claim."
    ),
    Column("Capacity", "capacity represents the actual resources of the underlying volume."),
    Column(
        "Access Modes",
        "accessModes contains the actual access modes the volume backing the PVC has. More "
        "info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1",
    ),
    Column("StorageClass", "StorageClass of the pvc"),
    AGE,
    Column(
        "VolumeMode",
        "volumeMode defines what type of volume is required by the claim. Value of Filesystem "
        "is implied when not included in claim spec.",
        priority=1,
    ),
)


def _pvc_cells(obj: KubeObject, now: datetime) -> list[Any]:
    volume = str(_get(obj, "spec", "volumeName", default=""))
    bound = bool(volume)
    return [
        _name(obj),
        _phase(obj),
        volume,
        str(_get(obj, "status", "capacity", "storage", default="0")) if bound else "",
        access_modes(_get(obj, "status", "accessModes")) if bound else "",
        _storage_class(obj),
        _age(obj, now),
        str(_get(obj, "spec", "volumeMode", default="<unset>")),
    ]


PVC_PRINTER = Printer(PVC_COLUMNS, _pvc_cells)

# storageclasses

_DEFAULT_CLASS_ANNOTATIONS = (
    "storageclass.kubernetes.io/is-default-class",
    "storageclass.beta.kubernetes.io/is-default-class",
)
STORAGE_CLASS_COLUMNS = (
    NAME,
    Column("Provisioner", "Provisioner indicates the type of the provisioner."),
    Column(
        "ReclaimPolicy",
        "Dynamically provisioned PersistentVolumes of this storage class are created with this "
        "reclaimPolicy. Defaults to Delete.",
    ),
    Column(
        "VolumeBindingMode",
        "VolumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  "
        "When unset, VolumeBindingImmediate is used. This field is only honored by servers that "
        "enable the VolumeScheduling feature.",
    ),
    Column(
        "AllowVolumeExpansion",
        "AllowVolumeExpansion shows whether the storage class allow volume expand",
    ),
    AGE,
)


def storage_class_name(obj: KubeObject) -> str:
    """The name, marked ` (default)` by the is-default-class annotation."""
    annotations = _meta(obj).get("annotations") or {}
    default = any(annotations.get(key) == "true" for key in _DEFAULT_CLASS_ANNOTATIONS)
    return _name(obj) + (" (default)" if default else "")


def _storage_class_cells(obj: KubeObject, now: datetime) -> list[Any]:
    return [
        storage_class_name(obj),
        str(obj.get("provisioner", "")),
        str(_or(obj.get("reclaimPolicy"), "Delete")),
        str(_or(obj.get("volumeBindingMode"), "Immediate")),
        bool(obj.get("allowVolumeExpansion") or False),
        _age(obj, now),
    ]


STORAGE_CLASS_PRINTER = Printer(STORAGE_CLASS_COLUMNS, _storage_class_cells)

# pods

POD_COLUMNS = (
    NAME,
    Column("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    Column("Status", "The aggregate status of the containers in this pod."),
    Column(
        "Restarts",
        "The number of times the containers in this pod have been restarted and when the last "
        "container in this pod has restarted.",
    ),
    AGE,
    Column(
        "IP",
        "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet "
        "allocated.",
        priority=1,
    ),
    Column(
        "Node",
        "NodeName is a request to schedule this pod onto a specific node. If it is non-empty, "
        "the scheduler simply schedules this pod onto that node, assuming that it fits resource "
        "requirements.",
        priority=1,
    ),
    Column(
        "Nominated Node",
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it "
        "cannot be scheduled right away as preemption victims receive their graceful "
        "termination periods. This field does not guarantee that the pod will be scheduled on "
        "this node. Scheduler may decide to place the pod elsewhere if other nodes become "
        "available sooner. Scheduler may also decide to give the resources on this node to a "
        "higher priority pod that is created after preemption. As a result, this field may be "
        "different than PodSpec.nodeName when the pod is scheduled.",
        priority=1,
    ),
    Column(
        "Readiness Gates",
        "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready "
        "when all its containers are ready AND all conditions specified in the readiness gates "
        'have status equal to "True" More info: '
        "https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates",
        priority=1,
    ),
)


@dataclass
class _PodTally:
    """What printPod accumulates over the container statuses."""

    reason: str
    ready: int = 0
    total: int = 0
    restarts: int = 0
    last_restart: datetime | None = None
    sidecar_restarts: int = 0
    last_sidecar_restart: datetime | None = None

    def restarted(self, status: Mapping[str, Any], *, sidecar: bool = False) -> None:
        count = int(status.get("restartCount", 0) or 0)
        finished = clock.parse_timestamp(
            str(_get(status, "lastState", "terminated", "finishedAt", default="") or "")
        )
        self.restarts += count
        self.last_restart = _later(self.last_restart, finished)
        if sidecar:
            self.sidecar_restarts += count
            self.last_sidecar_restart = _later(self.last_sidecar_restart, finished)


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return max(a, b)


def _condition_true(obj: KubeObject, kind: str) -> bool:
    conditions = _get(obj, "status", "conditions", default=[])
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def _terminated_reason(terminated: Mapping[str, Any], prefix: str = "") -> str:
    if terminated.get("reason"):
        return prefix + str(terminated["reason"])
    if terminated.get("signal"):
        return f"{prefix}Signal:{terminated['signal']}"
    return f"{prefix}ExitCode:{terminated.get('exitCode', 0)}"


def _pod_initializing(obj: KubeObject, tally: _PodTally) -> bool:
    """Walk the init containers; True while one of them still holds the pod back."""
    init_specs = _get(obj, "spec", "initContainers", default=[])
    sidecars = {c.get("name") for c in init_specs if c.get("restartPolicy") == "Always"}
    tally.total += len(sidecars)
    for index, status in enumerate(_get(obj, "status", "initContainerStatuses", default=[])):
        sidecar = status.get("name") in sidecars
        tally.restarted(status, sidecar=sidecar)
        state = status.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated and terminated.get("exitCode", 0) == 0:
            continue
        if sidecar and status.get("started"):
            tally.ready += 1 if status.get("ready") else 0
            continue
        if terminated:
            tally.reason = _terminated_reason(terminated, "Init:")
        elif waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            tally.reason = "Init:" + str(waiting["reason"])
        else:
            tally.reason = f"Init:{index}/{len(init_specs)}"
        return True
    return False


def _count_containers(obj: KubeObject, tally: _PodTally) -> None:
    tally.restarts, tally.last_restart = tally.sidecar_restarts, tally.last_sidecar_restart
    running = False
    for status in reversed(_get(obj, "status", "containerStatuses", default=[])):
        tally.restarted(status)
        state = status.get("state") or {}
        waiting, terminated = state.get("waiting") or {}, state.get("terminated")
        if waiting.get("reason"):
            tally.reason = str(waiting["reason"])
        elif terminated is not None:
            tally.reason = _terminated_reason(terminated)
        elif status.get("ready") and state.get("running") is not None:
            running = True
            tally.ready += 1
    if tally.reason == "Completed" and running:
        tally.reason = "Running" if _condition_true(obj, "Ready") else "NotReady"


def pod_summary(obj: KubeObject) -> _PodTally:
    """printPod's Ready / Status / Restarts, from spec and status."""
    phase = str(_get(obj, "status", "phase", default=""))
    tally = _PodTally(reason=str(_get(obj, "status", "reason", default="")) or phase)
    for condition in _get(obj, "status", "conditions", default=[]):
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            tally.reason = "SchedulingGated"
    tally.total = len(_get(obj, "spec", "containers", default=[]))
    initializing = _pod_initializing(obj, tally)
    if not initializing or _condition_true(obj, "Initialized"):
        _count_containers(obj, tally)
    if _deleting(obj) and _get(obj, "status", "reason") == "NodeLost":
        tally.reason = "Unknown"
    elif _deleting(obj) and phase not in ("Succeeded", "Failed"):
        tally.reason = "Terminating"
    return tally


def _readiness_gates(obj: KubeObject) -> str:
    gates = _get(obj, "spec", "readinessGates", default=[])
    if not gates:
        return "<none>"
    conditions = {
        c.get("type"): c.get("status") for c in _get(obj, "status", "conditions", default=[])
    }
    passed = sum(1 for g in gates if conditions.get(g.get("conditionType")) == "True")
    return f"{passed}/{len(gates)}"


def _pod_ip(obj: KubeObject) -> str:
    ips = _get(obj, "status", "podIPs", default=[])
    first = ips[0].get("ip", "") if ips else _get(obj, "status", "podIP", default="")
    return str(first or "<none>")


def _pod_cells(obj: KubeObject, now: datetime) -> list[Any]:
    tally = pod_summary(obj)
    restarts = str(tally.restarts)
    if tally.restarts and tally.last_restart is not None:
        ago = clock.human_duration((now - tally.last_restart).total_seconds())
        restarts = f"{tally.restarts} ({ago} ago)"
    return [
        _name(obj),
        f"{tally.ready}/{tally.total}",
        tally.reason,
        restarts,
        _age(obj, now),
        _pod_ip(obj),
        str(_or(_get(obj, "spec", "nodeName"), "<none>")),
        str(_or(_get(obj, "status", "nominatedNodeName"), "<none>")),
        _readiness_gates(obj),
    ]


def _pod_conditions(obj: KubeObject) -> list[dict[str, str]]:
    phase = _get(obj, "status", "phase")
    if phase == "Succeeded":
        message = "The pod has completed successfully."
    elif phase == "Failed":
        message = "The pod failed."
    else:
        return []
    return [{"type": "Completed", "status": "True", "reason": phase, "message": message}]


POD_PRINTER = Printer(POD_COLUMNS, _pod_cells, _pod_conditions)

# services


def _service_external_ip(obj: KubeObject) -> str:
    spec = obj.get("spec") or {}
    kind, external = spec.get("type", ""), list(spec.get("externalIPs") or [])
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if kind == "LoadBalancer":
        ingress = _get(obj, "status", "loadBalancer", "ingress", default=[])
        balancers = sorted({i.get("ip") or i.get("hostname") for i in ingress} - {None, ""})
        return ",".join([*balancers, *external]) or "<pending>"
    if kind == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<unknown>"


def _service_ports(obj: KubeObject) -> str:
    pieces = []
    for port in _get(obj, "spec", "ports", default=[]):
        protocol = port.get("protocol", "TCP")
        node_port = f":{port['nodePort']}" if port.get("nodePort") else ""
        pieces.append(f"{port.get('port', 0)}{node_port}/{protocol}")
    return ",".join(pieces) or "<none>"


def _service_cluster_ip(obj: KubeObject) -> str:
    ips = _get(obj, "spec", "clusterIPs", default=[]) or [_get(obj, "spec", "clusterIP")]
    return str(ips[0] or "<none>")


def _service_cells(obj: KubeObject, now: datetime) -> list[Any]:
    return [
        _name(obj),
        str(_get(obj, "spec", "type", default="")),
        _service_cluster_ip(obj),
        _service_external_ip(obj),
        _service_ports(obj),
        _age(obj, now),
        _format_labels(_get(obj, "spec", "selector")),
    ]


SERVICE_PRINTER = Printer(
    (
        NAME,
        Column(
            "Type",
            "type determines how the Service is exposed. Defaults to ClusterIP. Valid "
            'options are ExternalName, ClusterIP, NodePort, and LoadBalancer. "ClusterIP" '
            "allocates a cluster-internal IP address for load-balancing to endpoints. "
            "Endpoints are determined by the selector or if that is not specified, by "
            "manual construction of an Endpoints object or EndpointSlice objects. If "
            'clusterIP is "None", no virtual IP is allocated and the endpoints are '
            'published as a set of endpoints rather than a virtual IP. "NodePort" builds on '
            "ClusterIP and allocates a port on every node which routes to the same "
            'endpoints as the clusterIP. "LoadBalancer" builds on NodePort and creates an '
            "external load-balancer (if supported in the current cloud) which routes to the "
            'same endpoints as the clusterIP. "ExternalName" aliases this service to the '
            "specified externalName. Several other fields do not apply to ExternalName "
            "services. More info: "
            "https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types",
        ),
        Column(
            "Cluster-IP",
            "clusterIP is the IP address of the service and is usually assigned randomly. "
            "If an address is specified manually, is in-range (as per system "
            "configuration), and is not in use, it will be allocated to the service; "
            "otherwise creation of the service will fail. This field may not be changed "
            "through updates unless the type field is also being changed to ExternalName "
            "(which requires this field to be blank) or the type field is being changed "
            "from ExternalName (in which case this field may optionally be specified, as "
            'describe above).  Valid values are "None", empty string (""), or a valid IP '
            'address. Setting this to "None" makes a "headless service" (no virtual IP), '
            "which is useful when direct endpoint connections are preferred and proxying is "
            "not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If "
            "this field is specified when creating a Service of type ExternalName, creation "
            "will fail. This field will be wiped when updating a Service to type "
            "ExternalName. More info: "
            "https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies",
        ),
        Column(
            "External-IP",
            "externalIPs is a list of IP addresses for which nodes in the cluster will also "
            "accept traffic for this service.  These IPs are not managed by Kubernetes.  "
            "The user is responsible for ensuring that traffic arrives at a node with this "
            "IP.  A common example is external load-balancers that are not part of the "
            "Kubernetes system.",
        ),
        Column(
            "Port(s)",
            "The list of ports that are exposed by this service. More info: "
            "https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies",
        ),
        AGE,
        Column(
            "Selector",
            "Route service traffic to pods with label keys and values matching this "
            "selector. If empty or not present, the service is assumed to have an external "
            "process managing its endpoints, which Kubernetes will not modify. Only applies "
            "to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is "
            "ExternalName. More info: "
            "https://kubernetes.io/docs/concepts/services-networking/service/",
            priority=1,
        ),
    ),
    _service_cells,
)

# rbac bindings


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


def _binding_printer(role_ref_doc: str, what: str) -> Printer:
    def cells(obj: KubeObject, now: datetime) -> list[Any]:
        ref = obj.get("roleRef") or {}
        role = f"{ref.get('kind', '')}/{ref.get('name', '')}"
        return [_name(obj), role, _age(obj, now), *subjects(obj)]

    columns = (
        NAME,
        Column("Role", role_ref_doc),
        AGE,
        Column("Users", f"Users in the {what}", priority=1),
        Column("Groups", f"Groups in the {what}", priority=1),
        Column("ServiceAccounts", f"ServiceAccounts in the {what}", priority=1),
    )
    return Printer(columns, cells)


_RESOLVE_DOC = "If the RoleRef cannot be resolved, the Authorizer must return an error."
ROLE_BINDING_PRINTER = _binding_printer(
    "RoleRef can reference a Role in the current namespace or a ClusterRole in the global "
    f"namespace. {_RESOLVE_DOC}",
    "roleBinding",
)
CLUSTER_ROLE_BINDING_PRINTER = _binding_printer(
    f"RoleRef can only reference a ClusterRole in the global namespace. {_RESOLVE_DOC}",
    "clusterRoleBinding",
)

# kinds whose row is name, a few fields, age


def _count(*path: str) -> Callable[[KubeObject], int]:
    return lambda obj: sum(len(_get(obj, p, default={}) or {}) for p in path)


def _field(*path: str, default: Any = "") -> Callable[[KubeObject], Any]:
    return lambda obj: _get(obj, *path, default=default)


def _ingress_class_parameters(obj: KubeObject) -> str:
    params = _get(obj, "spec", "parameters")
    if not isinstance(params, Mapping):
        return "<none>"
    group = f".{params['apiGroup']}" if params.get("apiGroup") else ""
    return f"{params.get('kind', '')}{group}/{params.get('name', '')}"


SERVICE_ACCOUNT_PRINTER = _simple(
    (
        Column(
            "Secrets",
            "Secrets is a list of the secrets in the same namespace that pods running using this "
            "ServiceAccount are allowed to use. Pods are only limited to this list if this "
            'service account has a "kubernetes.io/enforce-mountable-secrets" annotation set to '
            '"true". This field should not be used to find auto-generated service account token '
            "secrets for use outside of pods. Instead, tokens can be requested directly using the "
            "TokenRequest API, or service account token secrets can be manually created. More "
            "info: https://kubernetes.io/docs/concepts/configuration/secret",
        ),
    ),
    lambda obj: len(obj.get("secrets") or []),
)
CONFIG_MAP_PRINTER = _simple(
    (
        Column(
            "Data",
            "Data contains the configuration data. Each key must consist of alphanumeric "
            "characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the "
            "BinaryData field. The keys stored in Data must not overlap with the keys in the "
            "BinaryData field, this is enforced during validation process.",
        ),
    ),
    _count("data", "binaryData"),
)
SECRET_PRINTER = _simple(
    (
        Column(
            "Type",
            "Used to facilitate programmatic handling of secret data. More info: "
            "https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",
        ),
        Column(
            "Data",
            "Data contains the secret data. Each key must consist of alphanumeric characters, "
            "'-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, "
            "representing the arbitrary (possibly non-string) data value here. Described in "
            "https://tools.ietf.org/html/rfc4648#section-4",
        ),
    ),
    _field("type"),
    _count("data"),
)
INGRESS_CLASS_PRINTER = _simple(
    (
        Column("Controller", "Controller that is responsible for handling this class"),
        Column("Parameters", "A reference to a resource with additional parameters"),
    ),
    _field("spec", "controller"),
    _ingress_class_parameters,
)
PRIORITY_CLASS_PRINTER = _simple(
    (
        Column(
            "Value",
            "The value of this priority class. This is the actual priority that pods receive "
            "when they have the name of this class in their pod spec.",
            type="integer",
        ),
        Column(
            "Global-Default",
            "globalDefault specifies whether this PriorityClass should be considered as the "
            "default priority for pods that do not have any priority class. Only one "
            "PriorityClass can be marked as `globalDefault`. However, if more than one "
            "PriorityClasses exists with their `globalDefault` field set to true, the smallest "
            "value of such global default PriorityClasses will be used as the default priority.",
            type="boolean",
        ),
    ),
    _field("value", default=0),
    lambda obj: bool(obj.get("globalDefault") or False),
)
# The printer documents Handler with ObjectMeta's (absent) "handler" entry: an empty description.
RUNTIME_CLASS_PRINTER = _simple((Column("Handler", ""),), _field("handler"))
LEASE_PRINTER = _simple(
    (Column("Holder", "holderIdentity contains the identity of the holder of a current lease."),),
    _field("spec", "holderIdentity"),
)

# metrics.k8s.io (metrics-server's convertor: columns named after the first row's usage keys)

_METRICS_COLUMNS = (
    Column("Name", "Name of the resource", format="name"),
    Column("cpu", "", format="quantity"),
    Column("memory", "", format="quantity"),
    Column("Window", "", format="duration"),
)
NODE_METRICS_PRINTER = Printer(_METRICS_COLUMNS, metrics.node_cells, columns_from_rows=True)
POD_METRICS_PRINTER = Printer(_METRICS_COLUMNS, metrics.pod_cells, columns_from_rows=True)

# events (core/v1, and events.k8s.io/v1 through the shared internal type)

EVENT_COLUMNS = (
    Column("Last Seen", "The time at which the most recent occurrence of this event was recorded."),
    Column("Type", "Type of this event (Normal, Warning), new types could be added in the future"),
    Column(
        "Reason",
        "This should be a short, machine understandable string that gives the reason for the "
        "transition into the object's current status.",
    ),
    Column("Object", "The object that this event is about."),
    Column(
        "Subobject",
        "If referring to a piece of an object instead of an entire object, this string should "
        "contain a valid JSON/Go field access statement, such as "
        "desiredState.manifest.containers[2]. For example, if the object reference is to a "
        'container within a pod, this would take on a value like: "spec.containers{name}" '
        '(where "name" refers to the name of the container that triggered the event) or if no '
        'container name is specified "spec.containers[2]" (container with index 2 in this pod). '
        "This syntax is chosen only to have some well-defined way of referencing a part of an "
        "object.",
        priority=1,
    ),
    Column(
        "Source",
        "The component reporting this event. Should be a short machine understandable string.",
        priority=1,
    ),
    Column("Message", "A human-readable description of the status of this operation."),
    Column(
        "First Seen",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
        priority=1,
    ),
    Column("Count", "The number of times this event has occurred.", priority=1),
    Column("Name", NAME_DOC, format="name", priority=1),
)


def core_event(obj: KubeObject) -> KubeObject:
    """An events.k8s.io/v1 Event in core/v1 field names (both print through one type)."""
    return {
        "metadata": obj.get("metadata", {}),
        "involvedObject": obj.get("regarding") or {},
        "reason": obj.get("reason", ""),
        "message": obj.get("note", ""),
        "source": obj.get("deprecatedSource") or {},
        "firstTimestamp": obj.get("deprecatedFirstTimestamp"),
        "lastTimestamp": obj.get("deprecatedLastTimestamp"),
        "count": obj.get("deprecatedCount", 0),
        "type": obj.get("type", ""),
        "eventTime": obj.get("eventTime"),
        "series": obj.get("series"),
        "reportingComponent": obj.get("reportingController", ""),
        "reportingInstance": obj.get("reportingInstance", ""),
    }


def _since(value: Any, now: datetime) -> str:
    return clock.age(str(value or ""), now)


def _event_cells(event: KubeObject, now: datetime) -> list[Any]:
    first = _since(event.get("firstTimestamp"), now)
    if not event.get("firstTimestamp"):
        first = _since(event.get("eventTime"), now)
    last = _since(event.get("lastTimestamp"), now) if event.get("lastTimestamp") else first
    count = int(event.get("count") or 0)
    series = event.get("series")
    if isinstance(series, Mapping):
        last = _since(series.get("lastObservedTime"), now)
        count = int(series.get("count") or 0)
    elif count == 0:
        # Singleton events of the new API carry no count.
        count = 1
    involved = event.get("involvedObject") or {}
    target = str(involved.get("kind", "")).lower()
    if involved.get("name"):
        target = f"{target}/{involved['name']}"
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent", "")
    host = source.get("host") or event.get("reportingInstance", "")
    return [
        last,
        event.get("type", ""),
        event.get("reason", ""),
        target,
        involved.get("fieldPath", ""),
        f"{component}, {host}" if host else component,
        str(event.get("message", "")).strip(),
        first,
        count,
        _name(event),
    ]


EVENT_PRINTER = Printer(EVENT_COLUMNS, _event_cells)
EVENT_V1_PRINTER = Printer(EVENT_COLUMNS, lambda obj, now: _event_cells(core_event(obj), now))

# apps


def format_label_selector(selector: Mapping[str, Any] | None, empty: str = "<none>") -> str:
    """metav1.FormatLabelSelector: requirements sorted by key, `empty` when there are none."""
    if not selector:
        return empty
    requirements: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        requirements.append((key, f"{key}={value}"))
    for expr in selector.get("matchExpressions") or []:
        key, op = str(expr.get("key", "")), expr.get("operator")
        values = ",".join(sorted(expr.get("values") or []))
        text = {
            "In": f"{key} in ({values})",
            "NotIn": f"{key} notin ({values})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }.get(str(op), key)
        requirements.append((key, text))
    return ",".join(text for _, text in sorted(requirements)) or empty


def _containers(obj: KubeObject) -> tuple[str, str]:
    containers = _get(obj, "spec", "template", "spec", "containers", default=[])
    names = ",".join(str(c.get("name", "")) for c in containers)
    return names, ",".join(str(c.get("image", "")) for c in containers)


_CONTAINERS = Column("Containers", "Names of each container in the template.", priority=1)
_IMAGES = Column("Images", "Images referenced by each container in the template.", priority=1)
_APPS_DOCS = "https://kubernetes.io/docs/concepts/workloads/controllers"
_LABEL_DOCS = "https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/"


def _status_int(obj: KubeObject, field: str) -> int:
    return int(_get(obj, "status", field, default=0) or 0)


def _replicas(obj: KubeObject) -> int:
    return int(_get(obj, "spec", "replicas", default=1))


def _deployment_cells(obj: KubeObject, now: datetime) -> list[Any]:
    names, images = _containers(obj)
    return [
        _name(obj),
        f"{_status_int(obj, 'readyReplicas')}/{_replicas(obj)}",
        _status_int(obj, "updatedReplicas"),
        _status_int(obj, "availableReplicas"),
        _age(obj, now),
        names,
        images,
        format_label_selector(_get(obj, "spec", "selector"), empty=""),
    ]


DEPLOYMENT_PRINTER = Printer(
    (
        NAME,
        Column("Ready", "Number of the pod with ready state"),
        Column(
            "Up-to-date",
            "Total number of non-terminated pods targeted by this deployment that have the "
            "desired template spec.",
        ),
        Column(
            "Available",
            "Total number of available pods (ready for at least minReadySeconds) targeted by this "
            "deployment.",
        ),
        AGE,
        _CONTAINERS,
        _IMAGES,
        Column(
            "Selector",
            "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be "
            "the ones affected by this deployment. It must match the pod template's labels.",
            priority=1,
        ),
    ),
    _deployment_cells,
)


def _replica_set_cells(obj: KubeObject, now: datetime) -> list[Any]:
    names, images = _containers(obj)
    return [
        _name(obj),
        _replicas(obj),
        _status_int(obj, "replicas"),
        _status_int(obj, "readyReplicas"),
        _age(obj, now),
        names,
        images,
        format_label_selector(_get(obj, "spec", "selector")),
    ]


REPLICA_SET_PRINTER = Printer(
    (
        NAME,
        Column(
            "Desired",
            "Replicas is the number of desired replicas. This is a pointer to distinguish between "
            "explicit zero and unspecified. Defaults to 1. More info: "
            f"{_APPS_DOCS}/replicationcontroller/#what-is-a-replicationcontroller",
            type="integer",
        ),
        Column(
            "Current",
            "Replicas is the most recently oberved number of replicas. More info: "
            f"{_APPS_DOCS}/replicationcontroller/#what-is-a-replicationcontroller",
            type="integer",
        ),
        Column(
            "Ready",
            "readyReplicas is the number of pods targeted by this ReplicaSet with a Ready "
            "Condition.",
            type="integer",
        ),
        AGE,
        _CONTAINERS,
        _IMAGES,
        Column(
            "Selector",
            "Selector is a label query over pods that should match the replica count. Label keys "
            "and values that must match in order to be controlled by this replica set. It must "
            f"match the pod template's labels. More info: {_LABEL_DOCS}#label-selectors",
            priority=1,
        ),
    ),
    _replica_set_cells,
)


def _stateful_set_cells(obj: KubeObject, now: datetime) -> list[Any]:
    names, images = _containers(obj)
    ready = f"{_status_int(obj, 'readyReplicas')}/{_replicas(obj)}"
    return [_name(obj), ready, _age(obj, now), names, images]


STATEFUL_SET_PRINTER = Printer(
    (NAME, Column("Ready", "Number of the pod with ready state"), AGE, _CONTAINERS, _IMAGES),
    _stateful_set_cells,
)


def _daemon_set_cells(obj: KubeObject, now: datetime) -> list[Any]:
    names, images = _containers(obj)
    counts = (
        "desiredNumberScheduled",
        "currentNumberScheduled",
        "numberReady",
        "updatedNumberScheduled",
        "numberAvailable",
    )
    return [
        _name(obj),
        *(_status_int(obj, c) for c in counts),
        _format_labels(_get(obj, "spec", "template", "spec", "nodeSelector")),
        _age(obj, now),
        names,
        images,
        format_label_selector(_get(obj, "spec", "selector")),
    ]


DAEMON_SET_PRINTER = Printer(
    (
        NAME,
        Column(
            "Desired",
            "The total number of nodes that should be running the daemon pod (including nodes "
            f"correctly running the daemon pod). More info: {_APPS_DOCS}/daemonset/",
            type="integer",
        ),
        Column(
            "Current",
            "The number of nodes that are running at least 1 daemon pod and are supposed to run "
            f"the daemon pod. More info: {_APPS_DOCS}/daemonset/",
            type="integer",
        ),
        Column(
            "Ready",
            "numberReady is the number of nodes that should be running the daemon pod and have "
            "one or more of the daemon pod running with a Ready Condition.",
            type="integer",
        ),
        Column(
            "Up-to-date",
            "The total number of nodes that are running updated daemon pod",
            type="integer",
        ),
        Column(
            "Available",
            "The number of nodes that should be running the daemon pod and have one or more of "
            "the daemon pod running and available (ready for at least spec.minReadySeconds)",
            type="integer",
        ),
        Column(
            "Node Selector",
            "NodeSelector is a selector which must be true for the pod to fit on a node. Selector "
            "which must match a node's labels for the pod to be scheduled on that node. More "
            "info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/",
        ),
        AGE,
        _CONTAINERS,
        _IMAGES,
        Column(
            "Selector",
            "A label query over pods that are managed by the daemon set. Must match in order to "
            "be controlled. It must match the pod template's labels. More info: "
            f"{_LABEL_DOCS}#label-selectors",
            priority=1,
        ),
    ),
    _daemon_set_cells,
)

PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "namespaces"): NAMESPACE_PRINTER,
    ("", "nodes"): NODE_PRINTER,
    ("", "persistentvolumes"): PV_PRINTER,
    ("", "persistentvolumeclaims"): PVC_PRINTER,
    ("", "pods"): POD_PRINTER,
    ("", "services"): SERVICE_PRINTER,
    ("", "serviceaccounts"): SERVICE_ACCOUNT_PRINTER,
    ("", "configmaps"): CONFIG_MAP_PRINTER,
    ("", "secrets"): SECRET_PRINTER,
    ("storage.k8s.io", "storageclasses"): STORAGE_CLASS_PRINTER,
    ("networking.k8s.io", "ingressclasses"): INGRESS_CLASS_PRINTER,
    ("scheduling.k8s.io", "priorityclasses"): PRIORITY_CLASS_PRINTER,
    ("node.k8s.io", "runtimeclasses"): RUNTIME_CLASS_PRINTER,
    ("coordination.k8s.io", "leases"): LEASE_PRINTER,
    (metrics.GROUP, "nodes"): NODE_METRICS_PRINTER,
    (metrics.GROUP, "pods"): POD_METRICS_PRINTER,
    ("", "events"): EVENT_PRINTER,
    ("events.k8s.io", "events"): EVENT_V1_PRINTER,
    ("apps", "deployments"): DEPLOYMENT_PRINTER,
    ("apps", "replicasets"): REPLICA_SET_PRINTER,
    ("apps", "statefulsets"): STATEFUL_SET_PRINTER,
    ("apps", "daemonsets"): DAEMON_SET_PRINTER,
    ("rbac.authorization.k8s.io", "rolebindings"): ROLE_BINDING_PRINTER,
    ("rbac.authorization.k8s.io", "clusterrolebindings"): CLUSTER_ROLE_BINDING_PRINTER,
}
"""Built-in printers by (group, plural); anything else gets DEFAULT_PRINTER."""
