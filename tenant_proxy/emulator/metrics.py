"""metrics.k8s.io/v1beta1 as metrics-server (v0.6, the v1.24 era) serves it. Pure.

On a real cluster the group exists once metrics-server is installed: its APIService
`v1beta1.metrics.k8s.io` registers the group with kube-aggregator (last in /apis: its
groupPriorityMinimum of 100 is below every built-in group's and custom resources' 1000), and its
ClusterRole `system:aggregated-metrics-reader` aggregates reads of both resources into view, edit
and admin. `Emulator(metrics_server=True)` installs both. Metrics are computed on every read from
the nodes and pods in the store (kubelet.py's figures), never stored:

- `nodes` (NodeMetrics, cluster-scoped) and `pods` (PodMetrics, namespaced); verbs get and list.
  metrics-server has no Watcher: `?watch=true` is 405, a `/watch/` path 404.
- metadata: name (and namespace), the node's or pod's labels copied, creationTimestamp = now; no
  uid, no resourceVersion. `timestamp` is the last scrape (the clock floored to the 15s
  resolution), `window` the scrape interval.
- label selectors match those copied labels; field selectors know metadata.name (and
  metadata.namespace). Items come sorted by (namespace,) name.
- 404s are the listers' own: a missing node is `node "x" not found`, a missing pod
  `pods "x" not found`; a pod that is not Running has no metrics:
  `podmetrics.metrics.k8s.io "ns/x" not found`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tenant_proxy.emulator import errors, kubelet, quantity
from tenant_proxy.emulator.clock import rfc3339
from tenant_proxy.emulator.errors import StatusError
from tenant_proxy.emulator.listing import ListOptions, matcher
from tenant_proxy.emulator.store import StoreView
from tenant_proxy.emulator.types import Attributes, KubeObject, ResourceType

GROUP = "metrics.k8s.io"
VERSION = "v1beta1"
RESOLUTION_SECONDS = 15  # metrics-server's default --metric-resolution
_READ = ("get", "list")

# v0.6 publishes no singular names.
NODE_METRICS = ResourceType(GROUP, VERSION, "nodes", "", "NodeMetrics", False, _READ)
POD_METRICS = ResourceType(GROUP, VERSION, "pods", "", "PodMetrics", True, _READ)
RESOURCE_TYPES = (NODE_METRICS, POD_METRICS)


def install_objects() -> list[KubeObject]:
    """What `kubectl apply` of metrics-server's manifests adds that the API itself depends on:
    the APIService (available) and the aggregated reader ClusterRole."""
    labels = {"k8s-app": "metrics-server"}
    aggregate = {
        f"rbac.authorization.k8s.io/aggregate-to-{role}": "true"
        for role in ("view", "edit", "admin")
    }
    return [
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": f"{VERSION}.{GROUP}", "labels": labels},
            "spec": {
                "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443},
                "group": GROUP,
                "version": VERSION,
                "insecureSkipTLSVerify": True,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
            "status": {
                "conditions": [
                    {
                        "type": "Available",
                        "status": "True",
                        "reason": "Passed",
                        "message": "all checks passed",
                    }
                ]
            },
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {
                "name": "system:aggregated-metrics-reader",
                "labels": {**labels, **aggregate},
            },
            "rules": [
                {
                    "apiGroups": [GROUP],
                    "resources": ["pods", "nodes"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        },
    ]


def get(store: StoreView, rt: ResourceType, namespace: str, name: str, now: datetime) -> KubeObject:
    """One NodeMetrics or PodMetrics, as a get answers it (with kind and apiVersion)."""
    if rt == NODE_METRICS:
        node = store.get_object("", "nodes", "", name)
        if node is None:
            raise errors.not_found("node", name)
        return {"kind": rt.kind, "apiVersion": rt.api_version, **node_metrics(node, now)}
    pod = store.get_object("", "pods", namespace, name)
    if pod is None:
        raise errors.not_found("pods", name)
    found = pod_metrics(pod, now)
    if found is None:
        raise StatusError(
            404,
            "NotFound",
            f'podmetrics.{GROUP} "{namespace}/{name}" not found',
            {"name": f"{namespace}/{name}", "group": GROUP, "kind": "podmetrics"},
        )
    return {"kind": rt.kind, "apiVersion": rt.api_version, **found}


def list_items(
    store: StoreView, rt: ResourceType, namespace: str, opts: ListOptions, now: datetime
) -> list[KubeObject]:
    """The items of a NodeMetricsList or PodMetricsList (without kind and apiVersion)."""
    matches = matcher(rt, opts)
    if rt == NODE_METRICS:
        found = [node_metrics(n, now) for n in store.list_objects("", "nodes")]
    else:
        pods = store.list_objects("", "pods", namespace or None)
        found = [m for m in (pod_metrics(p, now) for p in pods) if m is not None]
    return [m for m in found if matches(m)]


def refuse(rt: ResourceType, attrs: Attributes) -> StatusError:
    """The answer to any verb but get and list."""
    if attrs.verb == "watch" and f"/{VERSION}/watch/" in attrs.path:
        return errors.resource_not_found()  # no watch route is installed
    if attrs.verb == "watch":
        return StatusError(
            405,
            "MethodNotAllowed",
            f'watch is not supported on resources of kind "{rt.group_resource}"',
            {"group": GROUP, "kind": rt.plural},
        )
    return errors.method_not_allowed()


def node_metrics(node: KubeObject, now: datetime) -> KubeObject:
    usage = kubelet.node_usage(node)
    return {
        "metadata": _metadata(node, now),
        **_scrape(now),
        "usage": {"cpu": quantity.decimal_si(usage["cpu"]), "memory": _memory(usage)},
    }


def pod_metrics(pod: KubeObject, now: datetime) -> KubeObject | None:
    """A running pod's metrics; None for any other (the kubelet reports no containers)."""
    if (pod.get("status") or {}).get("phase") != "Running":
        return None
    containers = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        usage = kubelet.container_usage(container)
        containers.append(
            {
                "name": container.get("name", ""),
                "usage": {"cpu": quantity.decimal_si(usage["cpu"]), "memory": _memory(usage)},
            }
        )
    return {"metadata": _metadata(pod, now), **_scrape(now), "containers": containers}


def node_cells(obj: KubeObject, now: datetime) -> list[Any]:
    """A NodeMetrics Table row: Name, cpu, memory, Window."""
    usage = obj.get("usage") or {}
    return [obj["metadata"]["name"], usage.get("cpu", ""), usage.get("memory", ""), obj["window"]]


def pod_cells(obj: KubeObject, now: datetime) -> list[Any]:
    """A PodMetrics Table row: Name, the containers' cpu and memory summed, Window."""
    total = {"cpu": 0, "memory": 0}
    for container in obj.get("containers") or []:
        usage = container.get("usage") or {}
        total["cpu"] += int((quantity.parse(usage.get("cpu", "0")) or 0) * 10**9)
        total["memory"] += int(quantity.parse(usage.get("memory", "0")) or 0)
    cpu = quantity.decimal_si(total["cpu"])
    return [obj["metadata"]["name"], cpu, _memory(total), obj["window"]]


def _memory(usage: Mapping[str, int]) -> str:
    return quantity.binary_si(usage["memory"])


def _metadata(source: KubeObject, now: datetime) -> dict[str, Any]:
    meta = source.get("metadata") or {}
    out: dict[str, Any] = {"name": meta.get("name", "")}
    if meta.get("namespace"):
        out["namespace"] = meta["namespace"]
    out["creationTimestamp"] = rfc3339(now)
    if meta.get("labels"):
        out["labels"] = dict(meta["labels"])
    return out


def _scrape(now: datetime) -> dict[str, str]:
    epoch = int(now.astimezone(UTC).timestamp())
    last = datetime.fromtimestamp(epoch - epoch % RESOLUTION_SECONDS, UTC)
    return {"timestamp": rfc3339(last), "window": f"{RESOLUTION_SECONDS}s"}
