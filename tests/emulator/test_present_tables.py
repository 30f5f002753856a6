"""Tables and PartialObjectMetadata against the real server's transcripts."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.emulator import (
    cluster_printers,
    crd_printer,
    pod_printer,
    tables,
    workload_printers,
)
from tenant_proxy.emulator.errors import StatusError
from tenant_proxy.emulator.types import KubeObject, ResourceType

REFERENCE = Path(__file__).resolve().parents[1] / "reference"
# The recorder's clock when the list transcripts were taken ("2s" after 13:53:53).
RECORDED_AT = datetime(2026, 11, 24, 13, 53, 55, 500000, tzinfo=UTC)

NAMESPACES = ResourceType("", "v1", "namespaces", "namespace", "Namespace", namespaced=False)
NODES = ResourceType("", "v1", "nodes", "node", "Node", namespaced=False)
PVS = ResourceType("", "v1", "persistentvolumes", "persistentvolume", "PersistentVolume", False)
STORAGE_CLASSES = ResourceType(
    "storage.k8s.io", "v1", "storageclasses", "storageclass", "StorageClass", False
)
PODS = ResourceType("", "v1", "pods", "pod", "Pod", namespaced=True)
ROLES = ResourceType("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", True)
WIDGETS = ResourceType("example.com", "v1", "widgets", "widget", "Widget", True)


def transcript_body(name: str) -> Any:
    """The JSON body of a recorded exchange (a list of events for a watch)."""
    lines = (REFERENCE / name).read_text().splitlines()
    body = [line for line in lines if not line.startswith(("#", "> ", "< ", "<"))]
    if body and body[0].startswith("{") and body[0].endswith("}"):
        return [json.loads(line) for line in body if line.startswith("{")]
    return json.loads("\n".join(body))


def recorded_objects(name: str, rt: ResourceType) -> list[KubeObject]:
    """Objects rebuilt from a Table transcript: row metadata plus their last-applied spec."""
    objects = []
    for row in transcript_body(name)["rows"]:
        meta = row["object"]["metadata"]
        applied = meta.get("annotations", {}).get(
            "kubectl.kubernetes.io/last-applied-configuration"
        )
        body = json.loads(applied) if applied else {}
        objects.append({**body, "kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta})
    return objects


def table(rt: ResourceType, objects: list[KubeObject], **options: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "include_object": "",
        "version": "v1",
        "list_meta": {"resourceVersion": "254"},
        "with_columns": True,
        "now": RECORDED_AT,
    }
    return tables.table_for(rt, objects, **(defaults | options))


def test_namespace_table_matches_the_real_server() -> None:
    expected = transcript_body("list-namespaces-table.txt")
    objects = transcript_body("list-namespaces-json.txt")["items"]
    assert table(NAMESPACES, objects) == expected


def test_namespace_table_without_objects_carries_null_objects() -> None:
    expected = transcript_body("list-namespaces-table-include-none.txt")
    objects = transcript_body("list-namespaces-json.txt")["items"]
    assert table(NAMESPACES, objects, include_object="None") == expected


def test_namespace_table_with_objects_carries_typed_full_objects() -> None:
    expected = transcript_body("list-namespaces-table-include-object.txt")
    items = transcript_body("list-namespaces-json.txt")["items"]
    team_b = [o for o in items if o["metadata"]["name"] == "team-b-dev"]
    assert table(NAMESPACES, team_b, include_object="Object") == expected


def test_get_of_one_namespace_is_a_one_row_table() -> None:
    expected = transcript_body("get-namespace-table.txt")
    items = transcript_body("list-namespaces-json.txt")["items"]
    team_a = [o for o in items if o["metadata"]["name"] == "team-a-dev"]
    assert table(NAMESPACES, team_a, list_meta={"resourceVersion": "216"}) == expected


def test_node_table_matches_the_real_server_for_nodes_without_status() -> None:
    expected = transcript_body("list-nodes-table.txt")
    assert table(NODES, recorded_objects("list-nodes-table.txt", NODES)) == expected


def test_pv_table_matches_the_real_server() -> None:
    expected = transcript_body("list-pv-table.txt")
    objects = transcript_body("list-pv-json.txt")["items"]
    assert table(PVS, objects) == expected


def test_storage_class_table_matches_the_real_server() -> None:
    expected = transcript_body("list-storageclasses-table.txt")
    objects = recorded_objects("list-storageclasses-table.txt", STORAGE_CLASSES)
    assert table(STORAGE_CLASSES, objects) == expected


def test_watch_table_events_after_the_first_have_null_column_definitions() -> None:
    events = transcript_body("watch-namespaces-table.txt")
    later = events[1]["object"]
    meta = later["rows"][0]["object"]["metadata"]
    obj = {"metadata": meta, "status": {"phase": "Active"}}
    now = datetime(2026, 11, 24, 13, 54, 8, 500000, tzinfo=UTC)
    rendered = table(
        NAMESPACES,
        [obj],
        list_meta={"resourceVersion": meta["resourceVersion"]},
        with_columns=False,
        now=now,
    )
    assert rendered == later


def test_partial_metadata_list_matches_the_real_server() -> None:
    expected = transcript_body("list-namespaces-partial.txt")
    objects = transcript_body("list-namespaces-json.txt")["items"]
    assert tables.partial_metadata_list(objects, "v1", {"resourceVersion": "254"}) == expected


def test_partial_metadata_watch_event_object_matches_the_real_server() -> None:
    event = transcript_body("watch-partial-metadata.txt")[0]
    obj = {"kind": "Namespace", "apiVersion": "v1", "metadata": event["object"]["metadata"]}
    assert tables.partial_metadata(obj, "v1") == event["object"]


def test_unknown_include_object_is_a_bad_request() -> None:
    with pytest.raises(StatusError) as raised:
        table(NAMESPACES, [], include_object="Everything")
    assert raised.value.code == 400
    assert raised.value.message == 'unrecognized includeObject value: "Everything"'


def test_v1beta1_table_names_its_version() -> None:
    rendered = table(
        NAMESPACES, transcript_body("list-namespaces-json.txt")["items"][:1], version="v1beta1"
    )
    assert rendered["apiVersion"] == "meta.k8s.io/v1beta1"
    assert rendered["rows"][0]["object"]["apiVersion"] == "meta.k8s.io/v1beta1"


def node(**status: Any) -> KubeObject:
    return {
        "metadata": {"name": "n1", "creationTimestamp": "2026-11-24T13:00:00Z", "labels": {}},
        "spec": {},
        "status": status,
    }


def test_node_status_comes_from_the_ready_condition() -> None:
    ready = node(
        conditions=[
            {"type": "MemoryPressure", "status": "False"},
            {"type": "Ready", "status": "True"},
        ]
    )
    not_ready = node(conditions=[{"type": "Ready", "status": "False"}])
    assert cluster_printers.node_status(ready) == "Ready"
    assert cluster_printers.node_status(not_ready) == "NotReady"
    assert cluster_printers.node_status(node()) == "Unknown"


def test_cordoned_node_reads_scheduling_disabled() -> None:
    cordoned = node(conditions=[{"type": "Ready", "status": "True"}])
    cordoned["spec"]["unschedulable"] = True
    assert cluster_printers.node_status(cordoned) == "Ready,SchedulingDisabled"


def test_node_roles_come_from_role_labels_sorted() -> None:
    labelled = node()
    labelled["metadata"]["labels"] = {
        "node-role.kubernetes.io/worker": "",
        "node-role.kubernetes.io/control-plane": "",
        "node-role.kubernetes.io/": "",
        "kubernetes.io/role": "edge",
    }
    assert cluster_printers.node_roles(labelled) == "control-plane,edge,worker"


def test_node_wide_cells_show_addresses_and_system_info() -> None:
    full = node(
        addresses=[
            {"type": "InternalIP", "address": "10.0.0.1"},
            {"type": "ExternalIP", "address": "1.2.3.4"},
        ],
        nodeInfo={
            "kubeletVersion": "v1.24.0",
            "osImage": "Debian",
            "kernelVersion": "6.1",
            "containerRuntimeVersion": "containerd://1.7",
        },
    )
    cells = table(NODES, [full])["rows"][0]["cells"]
    assert cells[4:] == ["v1.24.0", "10.0.0.1", "1.2.3.4", "Debian", "6.1", "containerd://1.7"]


def test_default_storage_class_is_marked_in_its_name() -> None:
    default = {
        "metadata": {
            "name": "fast",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": "p",
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
    }
    cells = table(STORAGE_CLASSES, [default])["rows"][0]["cells"]
    assert cells[:5] == ["fast (default)", "p", "Retain", "WaitForFirstConsumer", True]


def test_pv_access_modes_are_abbreviated_in_fixed_order() -> None:
    assert (
        cluster_printers.access_modes(["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"])
        == "RWO,RWX"
    )
    assert cluster_printers.access_modes([]) == ""


def pod(phase: str = "Running", **status: Any) -> KubeObject:
    return {
        "metadata": {
            "name": "web",
            "namespace": "team-a-dev",
            "creationTimestamp": "2026-11-24T13:50:00Z",
        },
        "spec": {"nodeName": "node-a1", "containers": [{"name": "app"}, {"name": "side"}]},
        "status": {"phase": phase, **status},
    }


def running(name: str, restarts: int = 0, finished: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {
        "name": name,
        "ready": True,
        "restartCount": restarts,
        "state": {"running": {"startedAt": "2026-11-24T13:50:01Z"}},
    }
    if finished:
        status["lastState"] = {"terminated": {"exitCode": 1, "finishedAt": finished}}
    return status


def test_pod_row_shows_ready_containers_status_restarts_and_wide_cells() -> None:
    web = pod(
        podIP="10.1.0.5",
        containerStatuses=[
            running("app", restarts=2, finished="2026-11-24T13:53:00Z"),
            running("side"),
        ],
    )
    cells = table(PODS, [web])["rows"][0]["cells"]
    assert cells == [
        "web",
        "2/2",
        "Running",
        "2 (55s ago)",
        "3m55s",
        "10.1.0.5",
        "node-a1",
        "<none>",
        "<none>",
    ]


def test_pod_waiting_container_reason_becomes_the_status() -> None:
    crashing = pod(
        containerStatuses=[
            running("app"),
            {
                "name": "side",
                "ready": False,
                "restartCount": 0,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            },
        ]
    )
    summary = pod_printer.pod_summary(crashing)
    assert (summary.reason, summary.ready, summary.total) == ("CrashLoopBackOff", 1, 2)


def test_pod_stuck_in_init_shows_init_progress() -> None:
    init = pod(
        phase="Pending",
        initContainerStatuses=[{"name": "setup", "restartCount": 0, "state": {"running": {}}}],
    )
    init["spec"]["initContainers"] = [{"name": "setup"}, {"name": "migrate"}]
    assert pod_printer.pod_summary(init).reason == "Init:0/2"


def test_deleting_pod_reads_terminating() -> None:
    leaving = pod(containerStatuses=[running("app"), running("side")])
    leaving["metadata"]["deletionTimestamp"] = "2026-11-24T13:53:50Z"
    assert pod_printer.pod_summary(leaving).reason == "Terminating"


def test_succeeded_pod_row_carries_the_completed_condition() -> None:
    row = table(PODS, [pod(phase="Succeeded")])["rows"][0]
    assert row["conditions"] == [
        {
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }
    ]
    assert list(row) == ["cells", "conditions", "object"]


def test_kinds_without_a_printer_get_name_and_created_at() -> None:
    role = {"metadata": {"name": "reader", "creationTimestamp": "2026-11-24T13:00:00Z"}}
    rendered = table(ROLES, [role])
    assert [c["name"] for c in rendered["columnDefinitions"]] == ["Name", "Created At"]
    assert rendered["columnDefinitions"][1]["type"] == "date"
    assert rendered["rows"][0]["cells"] == ["reader", "2026-11-24T13:00:00Z"]


def test_empty_tables_have_empty_rows_except_from_the_default_convertor() -> None:
    assert table(NAMESPACES, [])["rows"] == []
    assert table(WIDGETS, [], printer_columns=[])["rows"] == []
    assert table(ROLES, [])["rows"] is None


@pytest.mark.parametrize(
    ("rt", "obj", "cells"),
    [
        (
            ResourceType("", "v1", "configmaps", "configmap", "ConfigMap", True),
            {"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}},
            ["c", 3, "<unknown>"],
        ),
        (
            ResourceType("", "v1", "secrets", "secret", "Secret", True),
            {"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "MQ=="}},
            ["s", "Opaque", 1, "<unknown>"],
        ),
        (
            ResourceType("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", True),
            {"metadata": {"name": "default"}, "secrets": [{"name": "t"}]},
            ["default", 1, "<unknown>"],
        ),
        (
            ResourceType(
                "scheduling.k8s.io",
                "v1",
                "priorityclasses",
                "priorityclass",
                "PriorityClass",
                False,
            ),
            {"metadata": {"name": "high"}, "value": 1000},
            ["high", 1000, False, "<unknown>"],
        ),
        (
            ResourceType(
                "networking.k8s.io", "v1", "ingressclasses", "ingressclass", "IngressClass", False
            ),
            {
                "metadata": {"name": "nginx"},
                "spec": {
                    "controller": "k8s.io/ingress-nginx",
                    "parameters": {"apiGroup": "k8s.example.com", "kind": "P", "name": "p1"},
                },
            },
            ["nginx", "k8s.io/ingress-nginx", "P.k8s.example.com/p1", "<unknown>"],
        ),
        (
            ResourceType(
                "node.k8s.io", "v1", "runtimeclasses", "runtimeclass", "RuntimeClass", False
            ),
            {"metadata": {"name": "gvisor"}, "handler": "runsc"},
            ["gvisor", "runsc", "<unknown>"],
        ),
        (
            ResourceType(
                "rbac.authorization.k8s.io",
                "v1",
                "rolebindings",
                "rolebinding",
                "RoleBinding",
                True,
            ),
            {
                "metadata": {"name": "devs"},
                "roleRef": {"kind": "ClusterRole", "name": "admin"},
                "subjects": [
                    {"kind": "Group", "name": "tenant-a-devs"},
                    {"kind": "User", "name": "alice"},
                    {"kind": "Group", "name": "ops"},
                    {"kind": "ServiceAccount", "namespace": "ci", "name": "bot"},
                ],
            },
            ["devs", "ClusterRole/admin", "<unknown>", "alice", "tenant-a-devs, ops", "ci/bot"],
        ),
    ],
)
def test_builtin_printers_fill_their_cells(
    rt: ResourceType, obj: KubeObject, cells: list[Any]
) -> None:
    rendered = table(rt, [obj])
    assert rendered["rows"][0]["cells"] == cells
    assert len(rendered["columnDefinitions"]) == len(cells)


def widget(**spec: Any) -> KubeObject:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "creationTimestamp": "2026-11-24T13:53:00Z"},
        "spec": spec,
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_custom_resource_without_printer_columns_gets_name_and_age() -> None:
    rendered = table(WIDGETS, [widget()], printer_columns=[])
    assert [(c["name"], c["type"]) for c in rendered["columnDefinitions"]] == [
        ("Name", "string"),
        ("Age", "date"),
    ]
    assert rendered["rows"][0]["cells"] == ["w1", "55s"]


def test_custom_resource_printer_columns_select_typed_values() -> None:
    columns = [
        {"name": "Size", "type": "integer", "jsonPath": ".spec.size", "priority": 1},
        {"name": "Color", "type": "string", "jsonPath": ".spec.color", "description": "c"},
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
        {"name": "Missing", "type": "string", "jsonPath": ".spec.nothing"},
        {"name": "Wrong", "type": "boolean", "jsonPath": ".spec.color"},
    ]
    rendered = table(WIDGETS, [widget(size=3.0, color="red")], printer_columns=columns)
    assert rendered["rows"][0]["cells"] == ["w1", 3, "red", "True", None, None]
    assert rendered["columnDefinitions"][1] == {
        "name": "Size",
        "type": "integer",
        "format": "",
        "description": "",
        "priority": 1,
    }


@given(st.dictionaries(st.text(min_size=1), st.text()), st.sampled_from(["v1", "v1beta1"]))
def test_partial_metadata_keeps_exactly_the_metadata(meta: dict[str, str], version: str) -> None:
    obj = {"kind": "Thing", "apiVersion": "x/v1", "metadata": meta, "spec": {"a": 1}}
    before = copy.deepcopy(obj)
    partial = tables.partial_metadata(obj, version)
    assert partial == {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": meta,
    }
    assert obj == before


@given(st.text(max_size=40))
def test_any_printer_column_path_resolves_or_misses_without_error(path: str) -> None:
    found, _ = crd_printer.json_path(widget(size=1), path)
    assert found in (True, False)


EVENTS = ResourceType("", "v1", "events", "event", "Event", True)
EVENTS_V1 = ResourceType("events.k8s.io", "v1", "events", "event", "Event", True)
DEPLOYMENTS = ResourceType("apps", "v1", "deployments", "deployment", "Deployment", True)
DAEMON_SETS = ResourceType("apps", "v1", "daemonsets", "daemonset", "DaemonSet", True)


def test_core_event_row_shows_times_target_source_and_count() -> None:
    event = {
        "metadata": {"name": "web.1", "namespace": "team-a-dev"},
        "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
        "reason": "Pulled",
        "message": " pulled \n",
        "type": "Normal",
        "source": {"component": "kubelet", "host": "node-a1"},
        "firstTimestamp": "2026-11-24T13:50:00Z",
        "lastTimestamp": "2026-11-24T13:53:00Z",
        "count": 4,
    }
    assert table(EVENTS, [event])["rows"][0]["cells"] == [
        "55s",
        "Normal",
        "Pulled",
        "pod/web",
        "spec.containers{app}",
        "kubelet, node-a1",
        "pulled",
        "3m55s",
        4,
        "web.1",
    ]


def test_events_v1_event_prints_through_the_core_columns() -> None:
    event = {
        "metadata": {"name": "web.2"},
        "regarding": {"kind": "Node", "name": "node-a1"},
        "reason": "Ready",
        "note": "node is ready",
        "type": "Normal",
        "eventTime": "2026-11-24T13:53:50.123456Z",
        "reportingController": "kubelet",
    }
    cells = table(EVENTS_V1, [event])["rows"][0]["cells"]
    assert cells == [
        "5s",
        "Normal",
        "Ready",
        "node/node-a1",
        "",
        "kubelet",
        "node is ready",
        "5s",
        1,
        "web.2",
    ]


def test_deployment_row_shows_ready_of_desired_and_its_template() -> None:
    deployment = {
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}],
            },
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "image": "nginx:1"},
                        {"name": "log", "image": "busybox"},
                    ]
                }
            },
        },
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    assert table(DEPLOYMENTS, [deployment])["rows"][0]["cells"] == [
        "web",
        "2/3",
        3,
        2,
        "<unknown>",
        "app,log",
        "nginx:1,busybox",
        "app=web,tier in (a,b)",
    ]


def test_daemon_set_row_shows_node_selector_and_counts() -> None:
    daemon = {
        "metadata": {"name": "agent"},
        "spec": {
            "template": {"spec": {"nodeSelector": {"pool": "a", "os": "linux"}, "containers": []}}
        },
        "status": {"desiredNumberScheduled": 3, "numberReady": 1},
    }
    cells = table(DAEMON_SETS, [daemon])["rows"][0]["cells"]
    assert cells == ["agent", 3, 0, 1, 0, 0, "os=linux,pool=a", "<unknown>", "", "", "<none>"]


@given(
    st.dictionaries(
        st.from_regex(r"[a-z]{1,5}", fullmatch=True),
        st.from_regex(r"[a-z0-9]{0,5}", fullmatch=True),
    )
)
def test_label_selector_text_lists_each_label_once_sorted(labels: dict[str, str]) -> None:
    text = workload_printers.format_label_selector({"matchLabels": labels})
    expected = ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>"
    assert text == expected
