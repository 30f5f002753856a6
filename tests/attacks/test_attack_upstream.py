"""Faults of what the proxy depends on: the API server's reviews and answers, the OIDC issuer.

Authentication fails closed: while TokenReview or the issuer's keys cannot be had, the caller
is 401 (as kube-apiserver: an authenticator's error is a 401, never a pass), and the same
credential works once they are back. The API server's flow control (429/503 with Retry-After)
and errors reach the client as the Status they are, with Retry-After; an answer that breaks off
never reaches the client as a complete one; a restart of the API server ends a tenant's watch
cleanly, and what the tenant sees after it is still its own.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import orjson
import pytest
from attack_support import (
    WAIT,
    PathFault,
    World,
    assert_nothing_foreign,
    exchange,
    probe,
)
from e2e.core_support import UNAUTHORIZED, assert_status

pytestmark = [pytest.mark.e2e]

JSON = [("Accept", "application/json")]
TOKENREVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"


# --- authentication's dependencies ---------------------------------------------------------------


async def service_account_token(world: World, name: str) -> str:
    """A fresh token of ServiceAccount team-a-dev/`name` (never reviewed before)."""
    em = world.emulator

    async def issue() -> str:
        account = em.get("v1", "ServiceAccount", name, "team-a-dev")
        if account is None:
            account = await em.create(
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": name, "namespace": "team-a-dev"},
                }
            )
        uid = account["metadata"]["uid"]
        return em.issuer.issue("team-a-dev", name, uid, em.issuer.api_audiences, 3600)[0]

    return await world.upstream.run_async(issue())


@pytest.mark.parametrize("code", [503, 500, 429])
async def test_tokenreview_down_is_401_and_the_token_works_once_it_is_back(
    world: World, code: int
) -> None:
    token = await service_account_token(world, "attack-ci")
    pods = "/api/v1/namespaces/team-a-dev/pods"
    headers = [*JSON, ("Authorization", f"Bearer {token}")]
    mark = world.mark()
    async with world.fault(PathFault(TOKENREVIEWS, code, remaining=100)):
        refused = await exchange(world, "GET", pods, headers, who=None)
        await probe(world)  # other callers, authenticated otherwise, are served meanwhile
    assert (refused.status, refused.json()) == (401, UNAUTHORIZED)
    assert not [p for p in mark.paths() if p.startswith(pods)]
    # Errors are never cached: the same token is reviewed again and accepted.
    accepted = await exchange(world, "GET", pods, headers, who=None)
    assert accepted.status == 403, accepted.body  # authenticated; its RBAC grants nothing
    assert 'User "system:serviceaccount:team-a-dev:attack-ci"' in accepted.json()["message"]
    mark.assert_upstream_clean(
        uid=True,
        **{
            "system:serviceaccount:team-a-dev:attack-ci": [
                "system:serviceaccounts",
                "system:serviceaccounts:team-a-dev",
                "system:authenticated",
            ]
        },
    )


def dave(world: World, kid: str) -> str:
    """A token of the discovery issuer (no prefix) for `dave`, signed with key `kid`."""
    if kid not in world.discovery.keys:
        world.discovery.new_key(kid)
    now = int(time.time())
    claims = {"iss": world.discovery.url, "aud": "tenant-proxy", "sub": "dave"}
    return world.discovery.token(kid, {**claims, "iat": now, "exp": now + 600})


async def as_dave(world: World, token: str) -> int:
    headers = [*JSON, ("Authorization", f"Bearer {token}")]
    answer = await exchange(world, "GET", "/api/v1/namespaces/team-c-dev/pods", headers, who=None)
    if answer.status == 401:
        assert answer.json() == UNAUTHORIZED
    else:
        assert 'User "dave" cannot list' in answer.json()["message"], answer.body
    return answer.status


async def accepted_soon(world: World, token: str) -> None:
    """The proxy fetches unknown keys at most every jwks_min_refetch_seconds (0.05 s here): ask
    until a fetch has happened since the keys changed."""
    async with asyncio.timeout(WAIT):
        while await as_dave(world, token) == 401:
            await asyncio.sleep(0.05)


async def test_an_issuer_down_before_any_key_was_fetched_fails_closed(world: World) -> None:
    world.discovery.up = False
    try:
        assert await as_dave(world, dave(world, "k-never-served")) == 401
        await probe(world)
    finally:
        world.discovery.up = True


async def test_cached_keys_keep_serving_while_the_issuer_is_down_and_new_ones_are_401(
    world: World,
) -> None:
    world.discovery.up = True
    cached = dave(world, "k-cached")
    await accepted_soon(world, cached)
    world.discovery.up = False
    try:
        assert await as_dave(world, cached) == 403
        rotated = dave(world, "k-rotated")
        assert await as_dave(world, rotated) == 401
        await probe(world)
    finally:
        world.discovery.up = True
    await accepted_soon(world, rotated)


# --- the API server's answers -----------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    id: str
    target: str  # what alice asks
    fault: str  # the prefix of the API server request that fails
    code: int
    retry_after: int | None
    reason: str
    remaining: int = 1  # how many API server requests the fault meets


FLOWS = [
    Flow("429, passed through", "/api/v1/namespaces/team-a-dev/configmaps",
         "/api/v1/namespaces/team-a-dev/configmaps", 429, 7, "TooManyRequests"),
    Flow("503 with Retry-After, passed through", "/api/v1/namespaces/team-a-dev/configmaps",
         "/api/v1/namespaces/team-a-dev/configmaps", 503, 3, "ServiceUnavailable"),
    Flow("500, passed through", "/api/v1/namespaces/team-a-dev/configmaps",
         "/api/v1/namespaces/team-a-dev/configmaps", 500, None, "InternalError"),
    Flow("429 on a rewritten list", "/api/v1/persistentvolumes",
         "/api/v1/persistentvolumes?limit=1", 429, 5, "TooManyRequests"),
    Flow("500 on a rewritten list (its probe, then its read)", "/api/v1/persistentvolumes",
         "/api/v1/persistentvolumes?limit=", 500, None, "InternalError", remaining=2),
    Flow("429 on a filtered get (its probe: gets are the cache's too)",
         "/api/v1/namespaces/team-a-dev", "/api/v1/namespaces?limit=1", 429, 4,
         "TooManyRequests"),
    Flow("503 on a pushed-down list", "/api/v1/nodes", "/api/v1/nodes?limit=1", 503, 2,
         "ServiceUnavailable"),
]  # fmt: skip


@pytest.mark.parametrize("flow", FLOWS, ids=[f.id for f in FLOWS])
async def test_the_api_servers_flow_control_and_errors_reach_the_client_as_they_are(
    world: World, flow: Flow
) -> None:
    mark = world.mark()
    fault = PathFault(flow.fault, flow.code, flow.remaining, flow.retry_after)
    async with world.fault(fault):
        answer = await exchange(world, "GET", flow.target, JSON)
        assert fault.remaining == 0, "the fault was meant for this request"
    assert answer.status == flow.code, answer.body
    assert_status(answer.json(), flow.code, flow.reason)
    expected_retry = str(flow.retry_after) if flow.retry_after is not None else None
    assert answer.header("Retry-After") == expected_retry
    assert_nothing_foreign(answer.body)
    mark.assert_upstream_clean()
    await probe(world)


# Filtered lists are served from the proxy's watch cache once a `limit=1` list (the freshness
# probe, list_from_cache.py) says how far the API server is; when that probe fails otherwise
# than with flow control, the list is read upstream, page by page, as before the cache.
PROBE_FAILS = PathFault("/api/v1/persistentvolumes?limit=1", 500, remaining=1)


async def test_a_rewritten_list_that_breaks_off_is_502_never_half_a_list(world: World) -> None:
    mark = world.mark()
    cut = PathFault("/api/v1/persistentvolumes?limit=2", cut=True)
    async with world.fault(replace(PROBE_FAILS)), world.fault(cut):
        answer = await exchange(world, "GET", "/api/v1/persistentvolumes", JSON)
        assert cut.remaining == 0, "the fault was meant for this request"
    assert answer.status == 502, answer.body
    # metav1 has no BadGateway reason (status.py): InternalError, as client-go reads a 5xx.
    assert_status(answer.json(), 502, "InternalError")
    assert_nothing_foreign(answer.body)
    mark.assert_upstream_clean()
    await probe(world)


async def test_a_freshness_probe_that_breaks_off_falls_back_to_the_upstream_read(
    world: World,
) -> None:
    """The probe's answer breaks off: the cache cannot know it is current, so the list is
    read upstream, as without the cache (which then answers, or fails with a Status)."""
    async with world.fault(PathFault("/api/v1/persistentvolumes?limit=1", cut=True)):
        answer = await exchange(world, "GET", "/api/v1/persistentvolumes", JSON)
    assert answer.status == 200, answer.body
    assert answer.json()["kind"] == "PersistentVolumeList"
    assert_nothing_foreign(answer.body)
    await probe(world)


async def test_a_passed_through_answer_that_breaks_off_never_looks_complete(world: World) -> None:
    target = "/api/v1/namespaces/team-a-dev/serviceaccounts"
    async with world.fault(PathFault(target, cut=True)), world.session() as alice:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with alice.get(target, headers=dict(JSON)) as resp:
                await resp.read()
    await probe(world)


# --- the API server restarts under open watches -------------------------------------------------


async def read_stream(resp: aiohttp.ClientResponse, into: list[bytes]) -> None:
    async for line in resp.content:
        if line.strip():
            into.append(line)


async def read_relayed_stream(resp: aiohttp.ClientResponse, into: list[bytes]) -> str:
    """A passed-through watch relays the API server's bytes: when its connection drops, the
    client's is dropped too (a clean end would claim an end the API server never sent)."""
    try:
        await read_stream(resp, into)
    except aiohttp.ClientPayloadError:
        return "dropped"
    return "ended"


def names(lines: list[bytes], kind: str = "ADDED") -> set[str]:
    events = [orjson.loads(line) for line in lines]
    return {e["object"]["metadata"]["name"] for e in events if e["type"] == kind}


def priority_class(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": name},
        "value": 1000,
    }


PRIORITY_CLASSES = "/apis/scheduling.k8s.io/v1/priorityclasses"
AFTER = ("team-a-after-restart", "team-b-after-restart")


async def test_a_restart_of_the_api_server_under_watches_leaks_nothing(world: World) -> None:
    """A filtered watch is served from the proxy's own watch of the API server: across the
    restart it goes on (or ends cleanly) with her objects only. A passed-through watch is
    the API server's own stream: it ends or drops with it. A new watch from before the
    restart replays only her changes."""
    filtered: list[bytes] = []
    passed: list[bytes] = []
    rv = await list_version(world, PRIORITY_CLASSES)
    async with (
        world.session() as alice,
        alice.get(f"{PRIORITY_CLASSES}?watch=1", headers=dict(JSON)) as pc_watch,
        alice.get(
            "/api/v1/namespaces/team-a-dev/configmaps?watch=1", headers=dict(JSON)
        ) as cm_watch,
    ):
        assert (pc_watch.status, cm_watch.status) == (200, 200)
        pc_reader = asyncio.ensure_future(read_stream(pc_watch, filtered))
        cm_reader = asyncio.ensure_future(read_relayed_stream(cm_watch, passed))
        try:
            async with asyncio.timeout(WAIT):
                while names(filtered) != {"team-a-high"}:
                    await asyncio.sleep(0.02)
            await world.upstream.run_async(world.emulator.restart())
            assert await asyncio.wait_for(cm_reader, WAIT) in ("ended", "dropped")
            await eventually_probe(world)
            for name in AFTER:
                await world.upstream.run_async(world.emulator.create(priority_class(name)))
            async with asyncio.timeout(WAIT):
                while not pc_reader.done() and AFTER[0] not in names(filtered):
                    await asyncio.sleep(0.02)
            if pc_reader.done():
                pc_reader.result()  # it ended: cleanly, not dropped
        finally:
            pc_reader.cancel()
            cm_reader.cancel()
    events = [orjson.loads(line) for line in filtered + passed]
    assert {e["type"] for e in events} <= {"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"}
    for event in events:
        if event["type"] == "ERROR":
            assert event["object"]["kind"] == "Status"
    assert names(filtered) <= {"team-a-high", AFTER[0]}
    assert_nothing_foreign(b"".join(filtered + passed))
    assert AFTER[1].encode() not in b"".join(filtered)

    try:
        seen: list[bytes] = []
        target = f"{PRIORITY_CLASSES}?watch=1&resourceVersion={rv}"
        async with world.session() as alice, alice.get(target, headers=dict(JSON)) as resp:
            assert resp.status == 200
            reader = asyncio.ensure_future(read_stream(resp, seen))
            try:
                async with asyncio.timeout(WAIT):
                    while AFTER[0] not in names(seen):
                        await asyncio.sleep(0.02)
            finally:
                reader.cancel()
        assert names(seen) == {AFTER[0]}
        assert AFTER[1].encode() not in b"".join(seen)
        assert_nothing_foreign(b"".join(seen))
    finally:
        for name in AFTER:
            await world.upstream.run_async(
                world.emulator.delete("scheduling.k8s.io/v1", "PriorityClass", name)
            )


async def list_version(world: World, target: str) -> str:
    answer = await exchange(world, "GET", target, JSON)
    assert answer.status == 200, answer.body
    return str(answer.json()["metadata"]["resourceVersion"])


async def eventually_probe(world: World) -> None:
    """The probe, once the proxy's connections to the restarted API server are back."""
    async with asyncio.timeout(WAIT):
        while True:
            try:
                await probe(world)
                return
            except AssertionError:
                await asyncio.sleep(0.05)
