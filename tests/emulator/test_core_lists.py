"""List semantics and object lifecycle over real TLS: pages, versions, namespaces, CRDs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from tenant_proxy.emulator.app import Emulator

Session = Callable[..., aiohttp.ClientSession]
ADMIN = ("admin", ("system:masters",))


async def get_json(s: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    async with s.get(path) as resp:
        return resp.status, await resp.json()


async def test_pages_come_from_one_snapshot(emulator: Emulator, session_for_user: Session) -> None:
    s = session_for_user(*ADMIN)
    _, page1 = await get_json(s, "/api/v1/namespaces?limit=3")
    assert page1["metadata"]["remainingItemCount"] == 4
    await emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "zz"}})
    await emulator.delete("v1", "Namespace", "team-b-dev")
    names = [i["metadata"]["name"] for i in page1["items"]]
    token = page1["metadata"]["continue"]
    while token:
        _, page = await get_json(s, f"/api/v1/namespaces?limit=3&continue={token}")
        assert page["metadata"]["resourceVersion"] == page1["metadata"]["resourceVersion"]
        names += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
    assert names == [
        "default",
        "kube-node-lease",
        "kube-public",
        "kube-system",
        "team-a-dev",
        "team-a-prod",
        "team-b-dev",
    ]


async def test_selector_pages_omit_remaining_item_count(session_for_user: Session) -> None:
    _, page = await get_json(
        session_for_user(*ADMIN), "/api/v1/namespaces?limit=1&labelSelector=example.com/tenant"
    )
    assert [i["metadata"]["name"] for i in page["items"]] == ["team-a-dev"]
    assert "continue" in page["metadata"]
    assert "remainingItemCount" not in page["metadata"]


async def test_continue_after_compaction_is_410(
    emulator: Emulator, session_for_user: Session
) -> None:
    s = session_for_user(*ADMIN)
    await emulator.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n1"}})
    _, page1 = await get_json(s, "/api/v1/namespaces?limit=2")
    await emulator.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n2"}})
    emulator.compact()
    status, body = await get_json(
        s, f"/api/v1/namespaces?limit=2&continue={page1['metadata']['continue']}"
    )
    assert status == 410
    assert body["reason"] == "Expired"
    assert body["message"].startswith("The provided continue parameter is too old")


async def test_exact_list_at_a_past_version_shows_that_version(
    emulator: Emulator, session_for_user: Session
) -> None:
    rv = emulator.store.resource_version
    await emulator.patch("v1", "Namespace", "team-a-dev", {"metadata": {"labels": {"x": "y"}}})
    _, past = await get_json(
        session_for_user(*ADMIN),
        f"/api/v1/namespaces?resourceVersion={rv}&resourceVersionMatch=Exact",
    )
    team_a = next(i for i in past["items"] if i["metadata"]["name"] == "team-a-dev")
    assert "x" not in team_a["metadata"]["labels"]
    assert past["metadata"]["resourceVersion"] == str(rv)


async def test_future_resource_version_times_out_like_the_real_server(
    emulator: Emulator, session_for_user: Session
) -> None:
    status, body = await get_json(
        session_for_user(*ADMIN), f"/api/v1/namespaces?resourceVersion={10**9}"
    )
    assert status == 504
    assert body["message"].startswith("Too large resource version")


async def test_stale_update_conflicts_and_current_update_succeeds(
    session_for_user: Session,
) -> None:
    s = session_for_user(*ADMIN)
    _, ns = await get_json(s, "/api/v1/namespaces/team-b-dev")
    ns["metadata"]["labels"]["new"] = "1"
    async with s.put("/api/v1/namespaces/team-b-dev", json=ns) as resp:
        assert resp.status == 200
        updated = await resp.json()
    assert int(updated["metadata"]["resourceVersion"]) > int(ns["metadata"]["resourceVersion"])
    async with s.put("/api/v1/namespaces/team-b-dev", json=ns) as resp:
        body = await resp.json()
    assert resp.status == 409
    assert body["reason"] == "Conflict"


async def test_unchanged_update_keeps_the_resource_version(session_for_user: Session) -> None:
    s = session_for_user(*ADMIN)
    _, ns = await get_json(s, "/api/v1/namespaces/team-b-dev")
    async with s.put("/api/v1/namespaces/team-b-dev", json=ns) as resp:
        again = await resp.json()
    assert again["metadata"]["resourceVersion"] == ns["metadata"]["resourceVersion"]


async def test_patch_types(session_for_user: Session) -> None:
    s = session_for_user(*ADMIN)
    path = "/api/v1/namespaces/team-a-dev/configmaps"
    async with s.post(path, json={"metadata": {"name": "p"}, "data": {"a": "1"}}) as resp:
        assert resp.status == 201
    patches = [
        ("application/json-patch+json", [{"op": "add", "path": "/data/b", "value": "2"}]),
        ("application/merge-patch+json", {"data": {"a": None}}),
        ("application/strategic-merge-patch+json", {"data": {"c": "3"}}),
    ]
    for ctype, body in patches:
        async with s.patch(f"{path}/p", json=body, headers={"Content-Type": ctype}) as resp:
            assert resp.status == 200, await resp.text()
            result = await resp.json()
    assert result["data"] == {"b": "2", "c": "3"}
    async with s.patch(
        f"{path}/p", data=b"{}", headers={"Content-Type": "application/apply-patch+yaml"}
    ) as resp:
        assert resp.status == 415


async def test_create_into_terminating_namespace_is_forbidden_until_it_is_gone(
    emulator: Emulator, session_for_user: Session
) -> None:
    s = session_for_user(*ADMIN)
    await emulator.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "held",
                "namespace": "team-b-dev",
                "finalizers": ["example.com/hold"],
            },
        }
    )
    async with s.delete("/api/v1/namespaces/team-b-dev") as resp:
        deleted = await resp.json()
    assert deleted["status"]["phase"] == "Terminating"
    async with s.post(
        "/api/v1/namespaces/team-b-dev/configmaps", json={"metadata": {"name": "late"}}
    ) as resp:
        body = await resp.json()
    assert resp.status == 403
    assert body["message"] == (
        'configmaps "late" is forbidden: unable to create new content in namespace team-b-dev '
        "because it is being terminated"
    )
    status, held = await get_json(s, "/api/v1/namespaces/team-b-dev/configmaps/held")
    assert held["metadata"]["deletionTimestamp"]
    await emulator.patch(
        "v1", "ConfigMap", "held", {"metadata": {"finalizers": None}}, namespace="team-b-dev"
    )
    status, _ = await get_json(s, "/api/v1/namespaces/team-b-dev")
    assert status == 404


async def test_namespace_delete_removes_its_content(
    emulator: Emulator, session_for_user: Session
) -> None:
    await emulator.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "team-a-prod"},
        }
    )
    await emulator.delete("v1", "Namespace", "team-a-prod")
    assert emulator.store.list_objects("", "configmaps", "team-a-prod") == []
    assert emulator.get("v1", "Namespace", "team-a-prod") is None


async def test_delete_answers_status_for_configmaps_and_object_for_pods(
    emulator: Emulator, session_for_user: Session
) -> None:
    s = session_for_user(*ADMIN)
    await emulator.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "team-a-dev"},
        }
    )
    await emulator.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "team-a-dev"},
            "spec": {"containers": [{"name": "m", "image": "x:1"}]},
        }
    )
    async with s.delete("/api/v1/namespaces/team-a-dev/configmaps/c") as resp:
        assert (await resp.json())["status"] == "Success"
    async with s.delete("/api/v1/namespaces/team-a-dev/pods/p") as resp:
        assert (await resp.json())["kind"] == "Pod"


async def test_deletecollection_honours_the_selector(
    emulator: Emulator, session_for_user: Session
) -> None:
    for name, tier in (("a", "x"), ("b", "x"), ("c", "y")):
        await emulator.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "team-a-dev", "labels": {"tier": tier}},
            }
        )
    async with session_for_user(*ADMIN).delete(
        "/api/v1/namespaces/team-a-dev/configmaps?labelSelector=tier%3Dx"
    ) as resp:
        body = await resp.json()
    assert [i["metadata"]["name"] for i in body["items"]] == ["a", "b"]
    left = emulator.store.list_objects("", "configmaps", "team-a-dev")
    assert [o["metadata"]["name"] for o in left] == ["c"]


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object"}},
            }
        ],
    },
}


async def test_crd_serves_its_resource_until_deleted(
    emulator: Emulator, session_for_user: Session
) -> None:
    s = session_for_user(*ADMIN)
    path = "/apis/example.com/v1/namespaces/team-a-dev/widgets"
    async with s.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=CRD) as r:
        assert r.status == 201
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"size": 3},
    }
    async with s.post(path, json=widget) as resp:
        assert resp.status == 201
    status, listed = await get_json(s, path)
    assert listed["kind"] == "WidgetList"
    assert listed["items"][0]["kind"] == "Widget"
    status, groups = await get_json(s, "/apis")
    assert "example.com" in [g["name"] for g in groups["groups"]]
    async with s.delete(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"
    ) as resp:
        assert resp.status == 200
    status, _ = await get_json(s, path)
    assert status == 404


async def test_table_list_with_include_object_none(session_for_user: Session) -> None:
    async with session_for_user(*ADMIN).get(
        "/api/v1/nodes?includeObject=None",
        headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
    ) as resp:
        table = await resp.json()
    assert table["kind"] == "Table"
    assert [r["cells"][0] for r in table["rows"]] == ["node-a1", "node-b1", "node-shared"]
    assert all(r["object"] is None for r in table["rows"])


async def test_protobuf_only_accept_is_406(session_for_user: Session) -> None:
    async with session_for_user(*ADMIN).get(
        "/api/v1/namespaces", headers={"Accept": "application/vnd.kubernetes.protobuf"}
    ) as resp:
        assert resp.status == 406


async def test_apply_drops_what_the_manifest_dropped_and_keeps_what_others_set(
    emulator: Emulator,
) -> None:
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "pv-x", "labels": {"a": "1", "b": "2"}},
        "spec": {"capacity": {"storage": "1Gi"}, "hostPath": {"path": "/x"}},
    }
    first = await emulator.apply(pv)
    assert first["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    second = await emulator.apply({**pv, "metadata": {"name": "pv-x", "labels": {"a": "1"}}})
    assert second["metadata"]["labels"] == {"a": "1"}
    assert second["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
    assert second["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert second["status"]["phase"] == "Available"
    assert second["metadata"]["uid"] == first["metadata"]["uid"]


async def test_put_without_defaulted_fields_gets_them_again(session_for_user: Session) -> None:
    s = session_for_user(*ADMIN)
    _, pv = await get_json(s, "/api/v1/persistentvolumes/pv-unbound")
    del pv["spec"]["persistentVolumeReclaimPolicy"]
    pv["metadata"]["labels"] = {"touched": "yes"}
    async with s.put("/api/v1/persistentvolumes/pv-unbound", json=pv) as resp:
        updated = await resp.json()
    assert updated["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert updated["metadata"]["labels"] == {"touched": "yes"}


async def test_limit_is_ignored_at_resource_version_zero(session_for_user: Session) -> None:
    _, listed = await get_json(
        session_for_user(*ADMIN), "/api/v1/namespaces?limit=2&resourceVersion=0"
    )
    assert len(listed["items"]) == 7
    assert "continue" not in listed["metadata"]


async def test_deleting_a_pv_releases_its_protection_finalizer(
    emulator: Emulator, session_for_user: Session
) -> None:
    rv = emulator.store.resource_version
    deleted = await emulator.delete("v1", "PersistentVolume", "pv-unbound")
    assert deleted["metadata"]["deletionTimestamp"]
    assert "finalizers" not in deleted["metadata"]
    assert emulator.get("v1", "PersistentVolume", "pv-unbound") is None
    events = emulator.store.events_since("", "persistentvolumes", rv)
    assert [e.type for e in events] == ["MODIFIED", "MODIFIED", "DELETED"]


async def test_other_finalizers_still_hold_a_deleted_pv(emulator: Emulator) -> None:
    await emulator.patch(
        "v1",
        "PersistentVolume",
        "pv-b-data",
        {"metadata": {"finalizers": ["kubernetes.io/pv-protection", "example.com/keep"]}},
    )
    held = await emulator.delete("v1", "PersistentVolume", "pv-b-data")
    assert held["metadata"]["finalizers"] == ["example.com/keep"]
    assert emulator.get("v1", "PersistentVolume", "pv-b-data") is not None
