"""Watch streams over real TLS: initial state, replay, selector transitions, 410, bookmarks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp

from tenant_proxy.emulator.app import Emulator

Session = Callable[..., aiohttp.ClientSession]
ADMIN = ("admin", ("system:masters",))
NS = {"apiVersion": "v1", "kind": "Namespace"}


async def next_event(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    line = await asyncio.wait_for(resp.content.readline(), 5)
    assert line, "the watch stream ended"
    event: dict[str, Any] = json.loads(line)
    return event


async def events_until(resp: aiohttp.ClientResponse, name: str, kind: str) -> list[dict[str, Any]]:
    """Events (bookmarks dropped) up to the first `kind` event for object `name`."""
    seen: list[dict[str, Any]] = []
    while True:
        ev = await next_event(resp)
        if ev["type"] == "BOOKMARK":
            continue
        seen.append(ev)
        if ev["type"] == kind and ev["object"]["metadata"].get("name") == name:
            return seen


async def test_watch_without_rv_sends_current_state_then_live_events(
    emulator: Emulator, session_for_user: Session
) -> None:
    s = session_for_user(*ADMIN)
    async with s.get("/api/v1/nodes?watch=1") as resp:
        initial = [await next_event(resp) for _ in range(3)]
        assert {e["object"]["metadata"]["name"] for e in initial} == {
            "node-a1",
            "node-b1",
            "node-shared",
        }
        assert {e["type"] for e in initial} == {"ADDED"}
        await emulator.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n-new"}})
        live = await next_event(resp)
    assert live["type"] == "ADDED"
    assert live["object"]["metadata"]["name"] == "n-new"
    assert live["object"]["kind"] == "Node"


async def test_label_selector_transitions_become_added_and_deleted(
    emulator: Emulator, session_for_user: Session
) -> None:
    rv = emulator.store.resource_version
    path = (
        f"/api/v1/namespaces?watch=1&resourceVersion={rv}&labelSelector=example.com/tenant%3Dteam-a"
    )
    async with session_for_user(*ADMIN).get(path) as resp:
        await emulator.create({**NS, "metadata": {"name": "team-a-new"}})
        for tenant in ("team-a", "team-b", "team-a"):
            await emulator.patch(
                "v1",
                "Namespace",
                "team-a-new",
                {"metadata": {"labels": {"example.com/tenant": tenant}}},
            )
        await emulator.delete("v1", "Namespace", "team-a-new")
        seen = await events_until(resp, "team-a-new", "DELETED")
        seen += await events_until(resp, "team-a-new", "DELETED")
    assert [e["type"] for e in seen] == [
        "ADDED",
        "DELETED",
        "ADDED",
        "MODIFIED",
        "MODIFIED",
        "DELETED",
    ]
    left = seen[1]["object"]
    assert left["metadata"]["labels"]["example.com/tenant"] == "team-a"
    assert int(left["metadata"]["resourceVersion"]) > int(
        seen[0]["object"]["metadata"]["resourceVersion"]
    )
    assert seen[3]["object"]["status"]["phase"] == "Terminating"


async def test_watch_replays_history_after_a_resource_version(
    emulator: Emulator, session_for_user: Session
) -> None:
    rv = emulator.store.resource_version
    await emulator.patch(
        "v1",
        "PersistentVolume",
        "pv-unbound",
        {"spec": {"claimRef": {"namespace": "team-a-prod", "name": "logs"}}},
    )
    async with session_for_user(*ADMIN).get(
        f"/api/v1/persistentvolumes?watch=1&resourceVersion={rv}"
    ) as resp:
        ev = await next_event(resp)
    assert ev["type"] == "MODIFIED"
    assert ev["object"]["spec"]["claimRef"]["namespace"] == "team-a-prod"


async def test_watch_from_compacted_rv_gets_200_then_one_410_error_event(
    emulator: Emulator, session_for_user: Session
) -> None:
    emulator.compact()
    async with session_for_user(*ADMIN).get("/api/v1/namespaces?watch=1&resourceVersion=2") as resp:
        assert resp.status == 200
        ev = await next_event(resp)
        rest = await asyncio.wait_for(resp.content.read(), 5)
    assert ev["type"] == "ERROR"
    status = ev["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
    assert status["message"].startswith("too old resource version: 2 (")
    assert rest == b""


async def test_timeout_seconds_ends_the_stream_cleanly(session_for_user: Session) -> None:
    async with session_for_user(*ADMIN).get("/api/v1/nodes?watch=1&timeoutSeconds=1") as resp:
        body = await asyncio.wait_for(resp.read(), 5)
    lines = body.decode().splitlines()
    assert len(lines) == 3
    assert all(json.loads(line)["type"] == "ADDED" for line in lines)


async def test_legacy_watch_path_streams_the_selected_namespace(session_for_user: Session) -> None:
    path = "/api/v1/watch/namespaces?timeoutSeconds=1&labelSelector=example.com/tenant%3Dteam-b"
    async with session_for_user(*ADMIN).get(path) as resp:
        body = await asyncio.wait_for(resp.read(), 5)
    events = [json.loads(line) for line in body.decode().splitlines()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "team-b-dev")
    ]


async def test_bookmarks_arrive_when_asked(emulator: Emulator, session_for_user: Session) -> None:
    rv = emulator.store.resource_version
    async with session_for_user(*ADMIN).get(
        f"/api/v1/nodes?watch=1&resourceVersion={rv}&allowWatchBookmarks=true"
    ) as resp:
        ev = await next_event(resp)
    assert ev["type"] == "BOOKMARK"
    assert ev["object"]["kind"] == "Node"
    assert set(ev["object"]["metadata"]) == {"resourceVersion"}


async def test_send_initial_events_ends_with_annotated_bookmark(session_for_user: Session) -> None:
    path = (
        "/api/v1/nodes?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
        "&resourceVersion=&allowWatchBookmarks=true"
    )
    async with session_for_user(*ADMIN).get(path) as resp:
        events = [await next_event(resp) for _ in range(4)]
    assert [e["type"] for e in events] == ["ADDED"] * 3 + ["BOOKMARK"]
    annotations = events[3]["object"]["metadata"]["annotations"]
    assert annotations == {"k8s.io/initial-events-end": "true"}


async def test_cut_watches_ends_open_streams_abruptly(
    emulator: Emulator, session_for_user: Session
) -> None:
    async with session_for_user(*ADMIN).get("/api/v1/nodes?watch=1") as resp:
        for _ in range(3):
            await next_event(resp)
        assert emulator.cut_watches() == 1
        try:
            tail = await asyncio.wait_for(resp.content.read(), 5)
        except aiohttp.ClientPayloadError:
            tail = b""
    assert tail == b""


async def test_table_watch_carries_columns_only_on_the_first_event(
    session_for_user: Session,
) -> None:
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    async with session_for_user(*ADMIN).get(
        "/api/v1/namespaces?watch=true&timeoutSeconds=1", headers={"Accept": accept}
    ) as resp:
        body = await asyncio.wait_for(resp.read(), 5)
    events = [json.loads(line) for line in body.decode().splitlines()]
    assert len(events) >= 7
    assert all(e["object"]["kind"] == "Table" for e in events)
    assert events[0]["object"]["columnDefinitions"]
    assert all(e["object"]["columnDefinitions"] is None for e in events[1:])
    assert events[0]["object"]["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


async def test_slow_watcher_overflows_without_blocking_writers(
    session_for_user: Session,
) -> None:
    em = Emulator(bookmark_interval=0.2, watch_queue=5)
    await em.start()
    try:
        from tenant_proxy.emulator.testing import session_for

        async with (
            session_for(em, *ADMIN) as s,
            s.get(
                "/api/v1/configmaps?watch=1&resourceVersion=" + str(em.store.resource_version)
            ) as resp,
        ):
            for i in range(50):
                await em.apply(
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": f"c{i}", "namespace": "default"},
                    }
                )
            assert em.store.get_object("", "configmaps", "default", "c49") is not None
            body = await asyncio.wait_for(resp.read(), 5)
        # The watch overflowed and ended after at most its queue size of events.
        assert len(body.decode().splitlines()) <= 5
    finally:
        await em.stop()


async def test_bad_requests_do_not_disturb_open_watches(
    emulator: Emulator, session_for_user: Session
) -> None:
    s = session_for_user(*ADMIN)
    rv = emulator.store.resource_version
    async with s.get(f"/api/v1/namespaces?watch=1&resourceVersion={rv}") as watch_resp:
        bad = [
            ("POST", "/api/v1/namespaces", b"{not json"),
            ("POST", "/api/v1/namespaces", b"x" * (3 * 1024 * 1024 + 10)),
            ("GET", "/api/v1/../../etc/passwd", None),
            ("PUT", "/api/v1/namespaces/team-a-dev", b"[]"),
            ("GET", "/api/v1/namespaces?watch=1&resourceVersion=abc", None),
        ]
        for method, path, body in bad:
            async with s.request(
                method, path, data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                assert 400 <= resp.status < 500
        await emulator.create({**NS, "metadata": {"name": "still-flowing"}})
        ev = await next_event(watch_resp)
    assert (ev["type"], ev["object"]["metadata"]["name"]) == ("ADDED", "still-flowing")


async def test_a_client_leaving_releases_its_watch(
    emulator: Emulator, session_for_user: Session
) -> None:
    released: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def release(_: object) -> None:
        if not released.done():
            released.set_result(None)

    emulator.store.on_unwatch.append(release)

    resp = await session_for_user(*ADMIN).get("/api/v1/namespaces?watch=1")
    await next_event(resp)
    assert sum(1 for _ in emulator.store.watchers()) == 1
    resp.close()
    await asyncio.wait_for(released, 5)
    assert list(emulator.store.watchers()) == []


async def test_static_tokens_authenticate_bearer_callers() -> None:
    from tenant_proxy.emulator.testing import client_ssl
    from tenant_proxy.emulator.types import UserInfo

    em = Emulator(static_tokens={"s3cret": UserInfo(name="robot", groups=("system:masters",))})
    await em.start()
    try:
        connector = aiohttp.TCPConnector(ssl=client_ssl(em.ca_pem))
        async with aiohttp.ClientSession(base_url=em.url, connector=connector) as s:
            async with s.get("/api/v1/nodes", headers={"Authorization": "Bearer s3cret"}) as resp:
                assert resp.status == 200
            async with s.get("/api/v1/nodes", headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401
                assert (await resp.json())["reason"] == "Unauthorized"
    finally:
        await em.stop()


async def test_bad_include_object_on_a_table_watch_is_a_plain_400(
    session_for_user: Session,
) -> None:
    s = session_for_user(*ADMIN)
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io"
    async with s.get(
        "/api/v1/watch/namespaces?includeObject=Bogus", headers={"Accept": accept}
    ) as resp:
        status = await resp.json()
    assert resp.status == 400
    assert status["reason"] == "BadRequest"
    async with s.get("/api/v1/namespaces") as resp:
        assert resp.status == 200
