"""Printers of namespaced kinds: services, service accounts, config maps, secrets, events,
and the apps workloads (deployments, replica sets, stateful sets, daemon sets)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tenant_proxy.emulator import clock
from tenant_proxy.emulator.printer import (
    Printer,
    age_of,
    columns,
    count,
    dig,
    field,
    format_labels,
    name_of,
    simple,
)
from tenant_proxy.emulator.types import KubeObject


def _service_external_ip(obj: KubeObject) -> str:
    spec = obj.get("spec") or {}
    kind, external = spec.get("type", ""), list(spec.get("externalIPs") or [])
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if kind == "LoadBalancer":
        ingress = dig(obj, "status", "loadBalancer", "ingress", default=[])
        balancers = sorted({i.get("ip") or i.get("hostname") for i in ingress} - {None, ""})
        return ",".join([*balancers, *external]) or "<pending>"
    if kind == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<unknown>"


def _service_ports(obj: KubeObject) -> str:
    pieces = []
    for port in dig(obj, "spec", "ports", default=[]):
        protocol = port.get("protocol", "TCP")
        node_port = f":{port['nodePort']}" if port.get("nodePort") else ""
        pieces.append(f"{port.get('port', 0)}{node_port}/{protocol}")
    return ",".join(pieces) or "<none>"


def _service_cluster_ip(obj: KubeObject) -> str:
    ips = dig(obj, "spec", "clusterIPs", default=[]) or [dig(obj, "spec", "clusterIP")]
    return str(ips[0] or "<none>")


def _service_cells(obj: KubeObject, now: datetime) -> list[Any]:
    return [
        name_of(obj),
        str(dig(obj, "spec", "type", default="")),
        _service_cluster_ip(obj),
        _service_external_ip(obj),
        _service_ports(obj),
        age_of(obj, now),
        format_labels(dig(obj, "spec", "selector")),
    ]


SERVICE_PRINTER = Printer(columns("services"), _service_cells)
SERVICE_ACCOUNT_PRINTER = simple("serviceaccounts", lambda obj: len(obj.get("secrets") or []))
CONFIG_MAP_PRINTER = simple("configmaps", count("data", "binaryData"))
SECRET_PRINTER = simple("secrets", field("type"), count("data"))


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
        name_of(event),
    ]


EVENT_PRINTER = Printer(columns("events"), _event_cells)
# events.k8s.io/v1 prints through the internal type it shares with core/v1 events.
EVENT_V1_PRINTER = Printer(
    columns("events.events.k8s.io"), lambda obj, now: _event_cells(core_event(obj), now)
)


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
    containers = dig(obj, "spec", "template", "spec", "containers", default=[])
    names = ",".join(str(c.get("name", "")) for c in containers)
    return names, ",".join(str(c.get("image", "")) for c in containers)


def _status_int(obj: KubeObject, field: str) -> int:
    return int(dig(obj, "status", field, default=0) or 0)


def _replicas(obj: KubeObject) -> int:
    return int(dig(obj, "spec", "replicas", default=1))


def _deployment_cells(obj: KubeObject, now: datetime) -> list[Any]:
    names, images = _containers(obj)
    return [
        name_of(obj),
        f"{_status_int(obj, 'readyReplicas')}/{_replicas(obj)}",
        _status_int(obj, "updatedReplicas"),
        _status_int(obj, "availableReplicas"),
        age_of(obj, now),
        names,
        images,
        format_label_selector(dig(obj, "spec", "selector"), empty=""),
    ]


DEPLOYMENT_PRINTER = Printer(columns("deployments.apps"), _deployment_cells)


def _replica_set_cells(obj: KubeObject, now: datetime) -> list[Any]:
    names, images = _containers(obj)
    return [
        name_of(obj),
        _replicas(obj),
        _status_int(obj, "replicas"),
        _status_int(obj, "readyReplicas"),
        age_of(obj, now),
        names,
        images,
        format_label_selector(dig(obj, "spec", "selector")),
    ]


REPLICA_SET_PRINTER = Printer(columns("replicasets.apps"), _replica_set_cells)


def _stateful_set_cells(obj: KubeObject, now: datetime) -> list[Any]:
    names, images = _containers(obj)
    ready = f"{_status_int(obj, 'readyReplicas')}/{_replicas(obj)}"
    return [name_of(obj), ready, age_of(obj, now), names, images]


STATEFUL_SET_PRINTER = Printer(columns("statefulsets.apps"), _stateful_set_cells)


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
        name_of(obj),
        *(_status_int(obj, c) for c in counts),
        format_labels(dig(obj, "spec", "template", "spec", "nodeSelector")),
        age_of(obj, now),
        names,
        images,
        format_label_selector(dig(obj, "spec", "selector")),
    ]


DAEMON_SET_PRINTER = Printer(columns("daemonsets.apps"), _daemon_set_cells)

PRINTERS: dict[tuple[str, str], Printer] = {
    ("", "services"): SERVICE_PRINTER,
    ("", "serviceaccounts"): SERVICE_ACCOUNT_PRINTER,
    ("", "configmaps"): CONFIG_MAP_PRINTER,
    ("", "secrets"): SECRET_PRINTER,
    ("", "events"): EVENT_PRINTER,
    ("events.k8s.io", "events"): EVENT_V1_PRINTER,
    ("apps", "deployments"): DEPLOYMENT_PRINTER,
    ("apps", "replicasets"): REPLICA_SET_PRINTER,
    ("apps", "statefulsets"): STATEFUL_SET_PRINTER,
    ("apps", "daemonsets"): DAEMON_SET_PRINTER,
}
