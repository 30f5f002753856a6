"""Resource exhaustion: requests built to make the proxy allocate, parse or hold too much.

Each attack is sent many times at once while bob, another tenant, asks for his namespaces: his
probe is answered, and answered right, while the attack runs. Every attack request gets its
refusal (or its answer), and afterwards the proxy process's RSS is back within a generous bound
of where it was (attack_support.RSS_BOUND). Refusals by the HTTP parser (header and line sizes)
are plain 400s, as Go's net/http answers them; the rest are Status objects.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import orjson
import pytest
from attack_support import (
    ALICE,
    WAIT,
    RawResponse,
    World,
    assert_nothing_foreign,
    assert_rss_returns,
    assert_unread,
    exchange,
    host_header,
    open_tls,
    probe,
    send_raw,
)
from e2e.core_support import parse_head, read_response, request_bytes

pytestmark = [pytest.mark.e2e]

JSON = [("Accept", "application/json")]
CONFIGMAPS = "/api/v1/namespaces/team-a-dev/configmaps"
LIMIT = 3 * 1024 * 1024
ROUNDS = 12


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def nested_claims_token() -> str:
    """JWT-shaped, its claims 20,000 arrays deep (under the 64 KiB token bound)."""
    claims = b'{"iss":"x","a":' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    header = b64(b'{"alg":"ES256"}')
    return f"{header}.{b64(claims)}.{b64(b'sig')}"


def big_selector(terms: int) -> str:
    return ",".join(f"k{i}%20notin%20(a,b,c)" for i in range(terms))


@dataclass(frozen=True)
class Attack:
    id: str
    send: Callable[[World], Awaitable[RawResponse]]
    code: int
    reason: str  # "" for a plain refusal by the HTTP parser


def get(
    target: str, *headers: tuple[str, str], certificate: bool = True
) -> Callable[[World], Awaitable[RawResponse]]:
    """A GET as alice (or, without her certificate, as whoever `headers` make the caller)."""

    async def send(world: World) -> RawResponse:
        who = ALICE if certificate else None
        return await exchange(world, "GET", target, [*JSON, *headers], who=who)

    return send


async def declared_too_large(world: World, expect: bool = False) -> RawResponse:
    """Only the head: the proxy must answer from Content-Length, before the body."""
    head = [
        ("Host", host_header(world)),
        ("Content-Type", "application/json"),
        ("Content-Length", str(LIMIT + 1)),
    ]
    if expect:
        head.append(("Expect", "100-continue"))
    reader, writer = await open_tls(world)
    try:
        writer.write(request_bytes("POST", CONFIGMAPS, head))
        if expect:  # the first answer's head is the verdict: 100 (send it) or final
            status, headers = parse_head((await reader.readuntil(b"\r\n\r\n"))[:-4])
            if status == 100:
                return RawResponse(status, headers, b"")
            return RawResponse(status, headers, await reader.read())
        return await asyncio.wait_for(read_response(reader, "POST"), WAIT)
    finally:
        writer.close()


async def chunked_too_large(world: World) -> RawResponse:
    chunk = b"a" * (256 * 1024)
    head = (
        f"POST {CONFIGMAPS} HTTP/1.1\r\nHost: {host_header(world)}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    reader, writer = await open_tls(world)
    try:
        writer.write(head)
        for _ in range(LIMIT // len(chunk) + 2):
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            try:
                await writer.drain()
            except (ConnectionError, OSError):
                break  # refused mid-body: the answer is already there
        return await asyncio.wait_for(read_response(reader, "POST"), WAIT)
    finally:
        writer.close()


async def token_flood(world: World) -> RawResponse:
    """A distinct random token per request: each is a TokenReview unless paced."""
    token = b64(os.urandom(24))
    return await exchange(
        world, "GET", CONFIGMAPS, [*JSON, ("Authorization", f"Bearer {token}")], who=None
    )


ATTACKS = [
    Attack("a 70 KiB header", get(CONFIGMAPS, ("X-Pad", "p" * 70_000)), 400, "BadRequest"),
    Attack("5,000 headers", lambda w: send_many_headers(w, 5_000), 400, "BadRequest"),
    Attack("a 20 KiB request line", get(CONFIGMAPS + "?x=" + "a" * 20_000), 400, "BadRequest"),
    Attack(
        "a 60 KiB bearer token",
        get(CONFIGMAPS, ("Authorization", "Bearer " + "e" * 60_000), certificate=False),
        401,
        "Unauthorized",
    ),
    Attack(
        "a 200 KiB bearer token",
        get(CONFIGMAPS, ("Authorization", "Bearer " + "e" * 200_000), certificate=False),
        400,
        "BadRequest",
    ),
    Attack(
        "a JWT whose claims nest 20,000 deep",
        get(CONFIGMAPS, ("Authorization", f"Bearer {nested_claims_token()}"), certificate=False),
        401,
        "Unauthorized",
    ),
    Attack("a body declared over the limit", declared_too_large, 413, "RequestEntityTooLarge"),
    Attack(
        "a label selector of 300 terms",
        get(f"/api/v1/persistentvolumes?labelSelector={big_selector(300)}"),
        200,
        "",
    ),
    Attack(
        "a field selector of escapes",
        get("/api/v1/namespaces?fieldSelector=metadata.name%3D" + "%5C%5C" * 1300),
        200,
        "",
    ),
    Attack(
        "a selector that nests parentheses",
        get("/api/v1/nodes?labelSelector=a%20in%20" + "(" * 3000),
        400,
        "BadRequest",
    ),
]


async def send_many_headers(world: World, count: int) -> RawResponse:
    lines = "".join(f"X-H{i}: v\r\n" for i in range(count))
    data = (
        f"GET {CONFIGMAPS} HTTP/1.1\r\nHost: {host_header(world)}\r\n{lines}"
        "Connection: close\r\n\r\n"
    ).encode()
    answers = await send_raw(world, data, count=1)
    assert answers
    return answers[0]


async def attack_while_probing(
    world: World, send: Callable[[World], Awaitable[RawResponse]], rounds: int
) -> list[RawResponse]:
    """`rounds` attack requests at once, and bob's probe among them."""
    attacks = asyncio.gather(*(send(world) for _ in range(rounds)))
    await probe(world)
    return await attacks


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.id for a in ATTACKS])
async def test_exhaustion_is_refused_and_memory_comes_back(world: World, attack: Attack) -> None:
    before = world.rss()
    mark = world.mark()
    answers = await attack_while_probing(world, attack.send, ROUNDS)
    for answer in answers:
        assert answer.status == attack.code, answer.body[:300]
        if attack.reason:
            body = orjson.loads(answer.body)
            assert (body["kind"], body["reason"]) == ("Status", attack.reason)
        elif attack.code >= 400:
            assert_unread(answer.status, answer.body)
        assert_nothing_foreign(answer.body)
    mark.assert_upstream_clean()
    await probe(world)
    await assert_rss_returns(world, before)


async def test_expect_100_continue_with_a_body_over_the_limit_is_413_without_100(
    world: World,
) -> None:
    answer = await declared_too_large(world, expect=True)
    assert answer.status == 413, answer
    await probe(world)


async def test_a_body_over_the_limit_is_413_however_it_is_framed(world: World) -> None:
    before = world.rss()
    answers = await attack_while_probing(world, chunked_too_large, 5)
    for answer in answers:
        assert answer.status == 413
        body = orjson.loads(answer.body)
        assert (body["kind"], body["reason"]) == ("Status", "RequestEntityTooLarge")
    assert world.emulator.get("v1", "ConfigMap", "big", "team-a-dev") is None
    await probe(world)
    await assert_rss_returns(world, before)


async def test_a_flood_of_distinct_tokens_is_paced_not_passed(world: World) -> None:
    """TokenReviews are paced (tokenreview.py: burst 50, then 20/s): beyond that, 429 with
    Retry-After, which client-go honours; never a pass, and the API server sees a bounded
    number of reviews."""
    before = world.rss()
    mark = world.mark()
    answers = await attack_while_probing(world, token_flood, 90)
    codes = {a.status for a in answers}
    assert codes <= {401, 429}
    assert 429 in codes
    for answer in answers:
        if answer.status == 429:
            assert answer.header("Retry-After")
    reviews = [p for p in mark.paths() if p.startswith("/apis/authentication.k8s.io")]
    assert len(reviews) < 75
    await probe(world)
    await assert_rss_returns(world, before)


async def test_many_filtered_watches_opened_then_dropped_give_everything_back(
    world: World,
) -> None:
    """100 filtered watches at once (each an upstream watch and a queue in the proxy), then
    the clients go away: the upstream watches end and memory returns."""
    informers = await world.in_upstream(lambda: world.emulator.open_watches("", "namespaces"))
    before = world.rss()
    connector = aiohttp.TCPConnector(ssl=world.tls(), limit=0, local_addr=(world.client_address, 0))
    async with aiohttp.ClientSession(base_url=world.tenant_url, connector=connector) as alice:
        responses = await asyncio.gather(
            *(alice.get("/api/v1/namespaces?watch=1", headers=dict(JSON)) for _ in range(100))
        )
        assert {r.status for r in responses} == {200}
        first_lines = await asyncio.gather(*(r.content.readline() for r in responses))
        assert all(b'"ADDED"' in line for line in first_lines)
        await probe(world)
        for r in responses:
            r.close()
    async with asyncio.timeout(WAIT):
        while (
            await world.in_upstream(lambda: world.emulator.open_watches("", "namespaces"))
            > informers
        ):
            await asyncio.sleep(0.05)
    await probe(world)
    await assert_rss_returns(world, before)
