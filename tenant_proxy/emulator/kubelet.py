"""What the kubelets of the emulator's nodes would write and report. Pure.

No kubelet runs here (pods start at once, see defaults.py). These stand in for what a real one
gives clients to read:
- the node's Lease in kube-node-lease, created when the node registers (its heartbeat; `kubectl
  describe node` shows it). It is not renewed: nothing here goes stale, and a renewal every 10s
  would only add watch events.
- the usage metrics-server scrapes from it (`kubectl top`), derived from the objects so tests can
  assert the figures: a node uses a quarter of its capacity; a container uses exactly what it
  requests (nothing when it requests nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from tenant_proxy.emulator import quantity
from tenant_proxy.emulator.types import KubeObject

NODE_LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40  # the kubelet's default nodeLeaseDurationSeconds

Usage = dict[str, int]
"""cpu in nanocores, memory in bytes: what metrics-server reads from a kubelet."""


def micro_time(moment: datetime) -> str:
    """metav1.MicroTime as it serialises (a Lease's renewTime)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def node_lease(node: KubeObject, now: datetime) -> KubeObject:
    """The Lease a kubelet creates for its node: same name, owned by the node (so the garbage
    collector removes it with the node), held by the node."""
    meta = node["metadata"]
    name = meta["name"]
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": NODE_LEASE_NAMESPACE,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": name, "uid": meta["uid"]}
            ],
        },
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": micro_time(now),
        },
    }


def owned_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    """Whether `obj` names `owner` (by uid) among its ownerReferences."""
    uid = (owner.get("metadata") or {}).get("uid")
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return bool(uid) and any(isinstance(r, dict) and r.get("uid") == uid for r in refs)


def node_usage(node: Mapping[str, Any]) -> Usage:
    capacity = ((node.get("status") or {}).get("capacity")) or {}
    return {
        "cpu": _nano(capacity.get("cpu")) // 4,
        "memory": _whole(capacity.get("memory")) // 4,
    }


def container_usage(container: Mapping[str, Any]) -> Usage:
    requests = ((container.get("resources") or {}).get("requests")) or {}
    return {"cpu": _nano(requests.get("cpu")), "memory": _whole(requests.get("memory"))}


def _nano(value: object) -> int:
    return _whole(value, Decimal("1e9"))


def _whole(value: object, scale: Decimal = Decimal(1)) -> int:
    # A quantity may be written as a JSON number (`cpu: 4`); the API server reads it as "4".
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    parsed = quantity.parse(text)
    if parsed is None or parsed < 0:
        return 0
    return int((parsed * scale).to_integral_value(ROUND_FLOOR))
