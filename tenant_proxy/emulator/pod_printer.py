"""The pods printer: printPod's Ready / Status / Restarts, from spec and status."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tenant_proxy.emulator import clock
from tenant_proxy.emulator.printer import Printer, age_of, columns, deleting, dig, name_of, or_else
from tenant_proxy.emulator.types import KubeObject


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
            str(dig(status, "lastState", "terminated", "finishedAt", default="") or "")
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
    conditions = dig(obj, "status", "conditions", default=[])
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def _terminated_reason(terminated: Mapping[str, Any], prefix: str = "") -> str:
    if terminated.get("reason"):
        return prefix + str(terminated["reason"])
    if terminated.get("signal"):
        return f"{prefix}Signal:{terminated['signal']}"
    return f"{prefix}ExitCode:{terminated.get('exitCode', 0)}"


def _pod_initializing(obj: KubeObject, tally: _PodTally) -> bool:
    """Walk the init containers; True while one of them still holds the pod back."""
    init_specs = dig(obj, "spec", "initContainers", default=[])
    sidecars = {c.get("name") for c in init_specs if c.get("restartPolicy") == "Always"}
    tally.total += len(sidecars)
    for index, status in enumerate(dig(obj, "status", "initContainerStatuses", default=[])):
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
    for status in reversed(dig(obj, "status", "containerStatuses", default=[])):
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
    phase = str(dig(obj, "status", "phase", default=""))
    tally = _PodTally(reason=str(dig(obj, "status", "reason", default="")) or phase)
    for condition in dig(obj, "status", "conditions", default=[]):
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "SchedulingGated":
            tally.reason = "SchedulingGated"
    tally.total = len(dig(obj, "spec", "containers", default=[]))
    initializing = _pod_initializing(obj, tally)
    if not initializing or _condition_true(obj, "Initialized"):
        _count_containers(obj, tally)
    if deleting(obj) and dig(obj, "status", "reason") == "NodeLost":
        tally.reason = "Unknown"
    elif deleting(obj) and phase not in ("Succeeded", "Failed"):
        tally.reason = "Terminating"
    return tally


def _readiness_gates(obj: KubeObject) -> str:
    gates = dig(obj, "spec", "readinessGates", default=[])
    if not gates:
        return "<none>"
    conditions = {
        c.get("type"): c.get("status") for c in dig(obj, "status", "conditions", default=[])
    }
    passed = sum(1 for g in gates if conditions.get(g.get("conditionType")) == "True")
    return f"{passed}/{len(gates)}"


def _pod_ip(obj: KubeObject) -> str:
    ips = dig(obj, "status", "podIPs", default=[])
    first = ips[0].get("ip", "") if ips else dig(obj, "status", "podIP", default="")
    return str(first or "<none>")


def _pod_cells(obj: KubeObject, now: datetime) -> list[Any]:
    tally = pod_summary(obj)
    restarts = str(tally.restarts)
    if tally.restarts and tally.last_restart is not None:
        ago = clock.human_duration((now - tally.last_restart).total_seconds())
        restarts = f"{tally.restarts} ({ago} ago)"
    return [
        name_of(obj),
        f"{tally.ready}/{tally.total}",
        tally.reason,
        restarts,
        age_of(obj, now),
        _pod_ip(obj),
        str(or_else(dig(obj, "spec", "nodeName"), "<none>")),
        str(or_else(dig(obj, "status", "nominatedNodeName"), "<none>")),
        _readiness_gates(obj),
    ]


def _pod_conditions(obj: KubeObject) -> list[dict[str, str]]:
    phase = dig(obj, "status", "phase")
    if phase == "Succeeded":
        message = "The pod has completed successfully."
    elif phase == "Failed":
        message = "The pod failed."
    else:
        return []
    return [{"type": "Completed", "status": "True", "reason": phase, "message": message}]


POD_PRINTER = Printer(columns("pods"), _pod_cells, _pod_conditions)
