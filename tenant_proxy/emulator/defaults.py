"""What the real API server's defaulting and controllers fill in on objects. Pure.

Enough for the transcripts' shapes and for kubectl (get, describe, exec): namespaces get their
name label, finalizer and phase; PVs their reclaim policy, mode, protection finalizer and phase;
nodes an empty kubelet report; pods run at once (no kubelet here); services a cluster IP.
"""

from __future__ import annotations

from typing import Any

from tenant_proxy.emulator.types import KubeObject, ResourceType


def _ns_defaults(obj: KubeObject) -> None:
    name = obj["metadata"]["name"]
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    spec = obj.setdefault("spec", {})
    spec.setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")


def _pv_defaults(obj: KubeObject, creating: bool) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    spec.setdefault("volumeMode", "Filesystem")
    if isinstance(spec.get("hostPath"), dict):
        spec["hostPath"].setdefault("type", "")
    if creating:
        # The PV protection admission plugin adds this on create only.
        finalizers = obj["metadata"].setdefault("finalizers", [])
        if "kubernetes.io/pv-protection" not in finalizers:
            finalizers.append("kubernetes.io/pv-protection")
    obj.setdefault("status", {}).setdefault("phase", "Available")


def _pvc_defaults(obj: KubeObject) -> None:
    obj.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
    obj.setdefault("status", {}).setdefault("phase", "Pending")


def _sc_defaults(obj: KubeObject) -> None:
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")


_NODE_INFO = (
    "machineID",
    "systemUUID",
    "bootID",
    "kernelVersion",
    "osImage",
    "containerRuntimeVersion",
    "kubeletVersion",
    "kubeProxyVersion",
    "operatingSystem",
    "architecture",
)


def _node_defaults(obj: KubeObject) -> None:
    # The node lifecycle controller's TTL annotation, and what the API server serialises of a
    # node no kubelet has reported on: NodeSystemInfo's fields have no omitempty, so each is
    # there, empty, unless given (clients such as the Python client require every one).
    obj["metadata"].setdefault("annotations", {}).setdefault("node.alpha.kubernetes.io/ttl", "0")
    obj.setdefault("spec", {})
    status = obj.setdefault("status", {})
    status.setdefault("daemonEndpoints", {"kubeletEndpoint": {"Port": 0}})
    info = status.setdefault("nodeInfo", {})
    if isinstance(info, dict):
        for key in _NODE_INFO:
            info.setdefault(key, "")


def _container_defaults(container: dict[str, Any]) -> None:
    image = str(container.get("image", ""))
    latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    container.setdefault("resources", {})
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")


def _pod_defaults(obj: KubeObject, now: str) -> None:
    spec = obj.setdefault("spec", {})
    for container in spec.get("containers") or []:
        _container_defaults(container)
    for key, value in (
        ("restartPolicy", "Always"),
        ("terminationGracePeriodSeconds", 30),
        ("dnsPolicy", "ClusterFirst"),
        ("serviceAccountName", "default"),
        ("serviceAccount", spec.get("serviceAccountName", "default")),
        ("securityContext", {}),
        ("schedulerName", "default-scheduler"),
        ("enableServiceLinks", True),
        ("preemptionPolicy", "PreemptLowerPriority"),
        ("priority", 0),
    ):
        spec.setdefault(key, value)
    # No kubelet runs here: every pod starts at once, so exec, attach and logs have a target.
    status = obj.setdefault("status", {})
    if not status.get("phase"):
        status.update(_running_status(spec, now))


def _running_status(spec: dict[str, Any], now: str) -> dict[str, Any]:
    conditions = [
        {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
        for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]
    return {
        "phase": "Running",
        "conditions": conditions,
        "hostIP": "10.0.0.1",
        "podIP": "10.244.0.10",
        "podIPs": [{"ip": "10.244.0.10"}],
        "startTime": now,
        "qosClass": "BestEffort",
        "containerStatuses": [
            {
                "name": c.get("name", ""),
                "state": {"running": {"startedAt": now}},
                "lastState": {},
                "ready": True,
                "restartCount": 0,
                "image": c.get("image", ""),
                "imageID": "",
                "containerID": f"containerd://{c.get('name', '')}",
                "started": True,
            }
            for c in spec.get("containers") or []
        ],
    }


def _service_defaults(obj: KubeObject, serial: int) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    if spec.get("clusterIP") != "None" and not spec.get("clusterIP"):
        spec["clusterIP"] = f"10.96.{(serial // 250) % 250}.{serial % 250 + 2}"
    spec.setdefault("clusterIPs", [spec["clusterIP"]])
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    obj.setdefault("status", {}).setdefault("loadBalancer", {})


def _crd_defaults(obj: KubeObject, creating: bool) -> None:
    spec = obj.setdefault("spec", {})
    names = spec.setdefault("names", {})
    names.setdefault("singular", str(names.get("kind", "")).lower())
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    # The naming and establishing controllers' conditions, at once on creation; later they are
    # what was last written (through /status, as those controllers write them).
    kept = (obj.get("status") or {}).get("conditions")
    obj["status"] = {
        "acceptedNames": dict(names),
        "conditions": kept
        if kept and not creating
        else [
            {"type": t, "status": "True", "reason": r, "message": m}
            for t, r, m in (
                ("NamesAccepted", "NoConflicts", "no conflicts found"),
                ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            )
        ],
        "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
    }


def apply_defaults(
    rt: ResourceType, obj: KubeObject, now: str, serial: int, creating: bool = True
) -> None:
    """Fill in, in place, what the real API server's defaulting and controllers would.

    Defaulting runs on every write, as the real server's decoding does; `creating` adds what
    only creation brings (admission-added finalizers).
    """
    key = (rt.group, rt.plural)
    if key == ("", "namespaces"):
        _ns_defaults(obj)
    elif key == ("", "persistentvolumes"):
        _pv_defaults(obj, creating)
    elif key == ("", "persistentvolumeclaims"):
        _pvc_defaults(obj)
    elif key == ("", "nodes"):
        _node_defaults(obj)
    elif key == ("", "pods"):
        _pod_defaults(obj, now)
    elif key == ("", "services"):
        _service_defaults(obj, serial)
    elif key == ("", "secrets"):
        obj.setdefault("type", "Opaque")
    elif key == ("storage.k8s.io", "storageclasses"):
        _sc_defaults(obj)
    elif key == ("scheduling.k8s.io", "priorityclasses"):
        obj.setdefault("preemptionPolicy", "PreemptLowerPriority")
    elif key == ("apiextensions.k8s.io", "customresourcedefinitions"):
        _crd_defaults(obj, creating)
