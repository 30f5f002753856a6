"""Failures through the proxy: each is a Kubernetes Status, and the proxy keeps serving.

Limits, malformed paths and unacceptable formats are answered by the proxy itself without
reaching the API server; the API server's own flow control (429 / 503 with Retry-After) passes
through unchanged; an API server that goes away is a 5xx Status until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from core_support import (
    WAIT,
    World,
    assert_status,
    core_world,
    open_tls,
    raw_exchange,
    read_response,
    request_bytes,
)

from tenant_proxy.demo import Demo

pytestmark = [pytest.mark.e2e]

LIMIT = 3 * 1024 * 1024
CONFIGMAPS = "/api/v1/namespaces/team-a-dev/configmaps"
PODS = "/api/v1/namespaces/team-a-dev/pods"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with core_world(tmp_path) as w:
        yield w


async def alice_raw(
    world: World,
    method: str,
    target: str,
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
) -> tuple[int, Any, dict[str, str]]:
    """Status, decoded JSON body (None if not JSON) and lower-cased headers."""
    accept = () if any(k == "Accept" for k, _ in headers) else (("Accept", "application/json"),)
    resp = await raw_exchange(
        world.tenant_url,
        world.tls("alice", ("tenant-a-devs",)),
        method,
        target,
        [*accept, *headers, ("Connection", "close")],
        body,
    )
    found = {k.lower(): v for k, v in resp.headers}
    is_json = found.get("content-type", "").startswith("application/json")
    return resp.status, resp.json() if is_json and resp.body else None, found


def configmap(size: int) -> bytes:
    head = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"x":"'
    tail = b'"}}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


# --- limits ----------------------------------------------------------------------------------


async def test_declared_body_over_the_limit_is_413_before_it_is_sent(world: World) -> None:
    reader, writer = await open_tls(world.tenant_url, world.tls("alice", ("tenant-a-devs",)))
    try:
        # Only the head: the proxy must answer from Content-Length alone.
        writer.write(
            request_bytes(
                "POST",
                CONFIGMAPS,
                [
                    ("Host", "proxy"),
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(LIMIT + 1)),
                ],
            )
        )
        resp = await asyncio.wait_for(read_response(reader), WAIT)
    finally:
        writer.close()
    assert resp.status == 413
    assert_status(resp.json(), 413, "RequestEntityTooLarge")
    assert world.emulator.seen_at(CONFIGMAPS) == []


async def test_chunked_body_over_the_limit_is_413(world: World) -> None:
    body = configmap(LIMIT + 64 * 1024)
    session = world.session("alice", ("tenant-a-devs",))

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 256 * 1024):
            yield body[start : start + 256 * 1024]

    async with session.post(
        CONFIGMAPS, data=chunks(), headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 413
        assert_status(await resp.json(), 413, "RequestEntityTooLarge")
    assert world.emulator.get("v1", "ConfigMap", "big", "team-a-dev") is None


async def test_body_just_under_the_limit_is_forwarded(world: World) -> None:
    """The control for the two above: the limit is the proxy's, not an accident."""
    code, body, _ = await alice_raw(
        world,
        "POST",
        CONFIGMAPS,
        (("Content-Type", "application/json"),),
        configmap(LIMIT - 1024),
    )
    assert code == 201, body
    assert world.emulator.get("v1", "ConfigMap", "big", "team-a-dev") is not None


async def test_oversized_request_line_or_header_is_refused_and_not_forwarded(
    world: World,
) -> None:
    long_line, _, _ = await alice_raw(world, "GET", PODS + "?labelSelector=" + "a" * 20_000)
    long_header, _, _ = await alice_raw(world, "GET", PODS, (("X-Padding", "p" * 70_000),))
    assert long_line in (400, 414)
    assert long_header in (400, 431)
    assert world.emulator.seen_at(PODS) == []


# --- malformed requests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/api/v1/namespaces/%2e%2e/team-b-dev/pods",
        "/api/v1/namespaces/%2E%2E/x",
        "//api/v1/namespaces/team-b-dev/pods",
        "/api/v1//namespaces/team-b-dev/pods",
        "/api/v1/namespaces/team-a-dev/../team-b-dev/pods",
        "/api/v1/namespaces/./team-b-dev/pods",
        "/api/v1/namespaces/team-b-dev%2Fpods",
        "/api/v1/namespaces/team-a-dev/pods?labelSelector=a&labelSelector=b",
        "/api/v1/namespaces/team-a-dev/pods?limit=1;watch=true",
    ],
)
async def test_ambiguous_path_or_query_is_400_status_and_never_forwarded(
    world: World, target: str
) -> None:
    code, body, _ = await alice_raw(world, "GET", target)
    assert code == 400, body
    assert_status(body, 400, "BadRequest")
    assert not [s for s in world.emulator.seen if s.impersonate_users]


async def test_protobuf_only_accept_on_a_filtered_list_is_406_status(world: World) -> None:
    code, body, _ = await alice_raw(
        world, "GET", "/api/v1/namespaces", (("Accept", "application/vnd.kubernetes.protobuf"),)
    )
    assert code == 406, body
    assert_status(body, 406, "NotAcceptable")


async def test_protobuf_with_json_fallback_on_a_filtered_list_gets_filtered_json(
    world: World,
) -> None:
    code, body, headers = await alice_raw(
        world,
        "GET",
        "/api/v1/namespaces",
        (("Accept", "application/vnd.kubernetes.protobuf, application/json"),),
    )
    assert code == 200, body
    assert headers["content-type"].startswith("application/json")
    assert {item["metadata"]["name"] for item in body["items"]} == {"team-a-dev", "team-a-prod"}


# --- the API server's answers pass through -------------------------------------------------


@pytest.mark.parametrize("path", [PODS, "/api/v1/namespaces"], ids=["pass-through", "filtered"])
@pytest.mark.parametrize(
    ("code", "reason"), [(429, "TooManyRequests"), (503, "ServiceUnavailable")]
)
async def test_upstream_flow_control_passes_through_with_retry_after(
    world: World, path: str, code: int, reason: str
) -> None:
    world.emulator.fail_next(1, code, retry_after=3)
    got, body, headers = await alice_raw(world, "GET", path)
    assert got == code, body
    assert_status(body, code, reason)
    assert headers.get("retry-after") == "3"
    again, _, _ = await alice_raw(world, "GET", path)
    assert again == 200


async def test_upstream_response_headers_are_preserved(world: World) -> None:
    _, _, headers = await alice_raw(world, "GET", PODS)
    assert headers["content-type"] == "application/json"
    assert headers.get("cache-control") == "no-cache, private"
    assert headers.get("audit-id")


# --- the API server goes away ------------------------------------------------------------------


async def test_upstream_down_is_5xx_status_and_the_proxy_serves_again_once_it_is_back(
    world: World,
) -> None:
    port = world.emulator.port
    await world.emulator.stop()
    for path in (PODS, "/api/v1/namespaces"):
        code, body, _ = await alice_raw(world, "GET", path)
        assert code in (502, 503), body
        assert body["kind"] == "Status"
        assert body["code"] == code
    await world.emulator.start(port)
    code, body, _ = await alice_raw(world, "GET", PODS)
    assert (code, body["kind"]) == (200, "PodList")
    code, body, _ = await alice_raw(world, "GET", "/api/v1/namespaces")
    assert code == 200, body
    assert {item["metadata"]["name"] for item in body["items"]} == {"team-a-dev", "team-a-prod"}


# --- shutdown ---------------------------------------------------------------------------------


def running_informers() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("informer ") and not t.done()]


async def test_proxy_stop_right_after_start_ends_every_informer(tmp_path: Path) -> None:
    """Every informer ends by its cancellation: `Informer.stop` gives up on a task that ignores
    it after a bound and returns with the task still running. The API server stays up until the
    check, so an abandoned informer is still in its watch then, whatever the machine's load."""
    demo = Demo(tmp_path)
    await demo.start()
    assert demo.proxy is not None
    try:
        await asyncio.wait_for(demo.proxy.stop(), WAIT)
        assert running_informers() == []
    finally:
        await demo.emulator.stop()
        for task in running_informers():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, WAIT)
