"""HTTP request smuggling and request-line tricks, written byte by byte over TLS.

The proxy parses each request once (aiohttp's llhttp) and re-frames it upstream on its own
connection pool, so a desync would let a hidden request reach the API server on a connection
the proxy authenticates as itself. Each case states the answers expected on the connection, in
order: a Status `reason`, or "" for a plain-text refusal by the HTTP parser (as Go's net/http
answers malformed requests, with no Status); and in every case every request that reaches the
API server is alice's (impersonated) or the proxy's own read, and nothing foreign comes back.
The hidden request, when there is one, is alice's read of team-b-dev's secrets: it is either
refused with the rest or answered as her own request (her RBAC's 403), never as anyone else's.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest
from attack_support import (
    World,
    assert_nothing_foreign,
    assert_unread,
    host_header,
    probe,
    send_raw,
)
from e2e.core_support import RawResponse

pytestmark = [pytest.mark.e2e]

CONFIGMAPS = "/api/v1/namespaces/team-a-dev/configmaps"
HIDDEN = "GET /api/v1/namespaces/team-b-dev/secrets HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nConnection: close\r\n\r\n"  # noqa: E501
CM = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":"smuggle-"}}'
PLAIN = ""
ALICE_SECRETS_DENIED = (403, "Forbidden")


@dataclass(frozen=True)
class Case:
    id: str
    head: str  # request line and headers, without the blank line; {host} is filled in
    body: str
    answers: tuple[tuple[int, str], ...]


def post(*headers: str) -> str:
    return "\r\n".join([f"POST {CONFIGMAPS} HTTP/1.1", "Host: {host}", *headers])


def chunked(data: str) -> str:
    return f"{len(data):x}\r\n{data}\r\n0\r\n\r\n"


JSON_TYPE = "Content-Type: application/json"
CASES = [
    Case(
        "CL.TE",
        post(JSON_TYPE, f"Content-Length: {len(chunked(CM))}", "Transfer-Encoding: chunked"),
        chunked(CM) + HIDDEN,
        ((400, PLAIN),),
    ),
    Case(
        "TE.CL",
        post(JSON_TYPE, "Transfer-Encoding: chunked", "Content-Length: 4"),
        chunked(CM) + HIDDEN,
        ((400, PLAIN),),
    ),
    Case(
        "TE.TE, the second obfuscated",
        post(JSON_TYPE, "Transfer-Encoding: chunked", "Transfer-Encoding: x"),
        chunked(CM) + HIDDEN,
        ((400, PLAIN),),
    ),
    Case(
        "TE: xchunked",
        post(JSON_TYPE, "Transfer-Encoding: xchunked"),
        chunked(CM) + HIDDEN,
        ((400, PLAIN),),
    ),
    Case(
        "TE: chunked, identity",
        post(JSON_TYPE, "Transfer-Encoding: chunked, identity"),
        chunked(CM) + HIDDEN,
        ((400, PLAIN),),
    ),
    Case(
        "TE with a vertical tab",
        post(JSON_TYPE, "Transfer-Encoding:\x0bchunked"),
        chunked(CM) + HIDDEN,
        ((400, PLAIN),),
    ),
    Case(
        "TE name with a space before the colon",
        post(JSON_TYPE, "Transfer-Encoding : chunked", "Content-Length: 2"),
        "{}" + HIDDEN,
        ((400, PLAIN),),
    ),
    # chunked last, as RFC 9112 wants it: read chunked, the rest is the next request (alice's).
    Case(
        "TE: identity, chunked",
        post(JSON_TYPE, "Transfer-Encoding: identity, chunked"),
        chunked(CM) + HIDDEN,
        ((201, ""), ALICE_SECRETS_DENIED),
    ),
    Case(
        "TE: CHUNKED, upper case",
        post(JSON_TYPE, "Transfer-Encoding: CHUNKED"),
        chunked(CM) + HIDDEN,
        ((201, ""), ALICE_SECRETS_DENIED),
    ),
    Case(
        "two Content-Lengths",
        post(JSON_TYPE, f"Content-Length: {len(CM)}", "Content-Length: 4"),
        CM + HIDDEN,
        ((400, PLAIN),),
    ),
    Case(
        "two equal Content-Lengths",
        post(JSON_TYPE, f"Content-Length: {len(CM)}", f"Content-Length: {len(CM)}"),
        CM + HIDDEN,
        ((400, PLAIN),),
    ),
    Case("Content-Length +n", post(JSON_TYPE, f"Content-Length: +{len(CM)}"), CM, ((400, PLAIN),)),
    Case("Content-Length -1", post(JSON_TYPE, "Content-Length: -1"), CM, ((400, PLAIN),)),
    Case("Content-Length in hex", post(JSON_TYPE, "Content-Length: 0x10"), CM, ((400, PLAIN),)),
    Case(
        "Content-Length a list",
        post(JSON_TYPE, f"Content-Length: {len(CM)}, {len(CM)}"),
        CM,
        ((400, PLAIN),),
    ),
    Case(
        "Content-Length past 2^64",
        post(JSON_TYPE, "Content-Length: 18446744073709551617"),
        CM,
        ((400, PLAIN),),
    ),
    # A body shorter than the rest: the rest is the next request on this connection (alice's).
    Case(
        "a request after the body",
        post(JSON_TYPE, f"Content-Length: {len(CM)}"),
        CM + HIDDEN,
        ((201, ""), ALICE_SECRETS_DENIED),
    ),
    Case(
        "chunk size overflow",
        post(JSON_TYPE, "Transfer-Encoding: chunked"),
        "fffffffffffffffff1\r\n{}\r\n0\r\n\r\n" + HIDDEN,
        ((400, PLAIN),),
    ),
    Case(
        "chunk size with a sign",
        post(JSON_TYPE, "Transfer-Encoding: chunked"),
        "+2\r\n{}\r\n0\r\n\r\n" + HIDDEN,
        ((400, PLAIN),),
    ),
    Case(
        "chunk ended by a bare LF",
        post(JSON_TYPE, "Transfer-Encoding: chunked"),
        f"{len(CM):x}\n{CM}\n0\n\n" + HIDDEN,
        ((400, PLAIN),),
    ),
    Case(
        "absolute-form target, foreign path",
        "GET https://evil.example/api/v1/namespaces/team-b-dev HTTP/1.1\r\nHost: {host}",
        "",
        ((400, "BadRequest"),),
    ),
    Case(
        "absolute-form target with userinfo",
        "GET https://admin@127.0.0.1/api/v1/nodes HTTP/1.1\r\nHost: {host}",
        "",
        ((400, "BadRequest"),),
    ),
    # aiohttp's router answers targets that are not paths itself (no handler runs, nothing is
    # forwarded): a plain 404, not a Status.
    Case("asterisk-form target", "OPTIONS * HTTP/1.1\r\nHost: {host}", "", ((404, PLAIN),)),
    Case(
        "CONNECT to the API server",
        "CONNECT 127.0.0.1:6443 HTTP/1.1\r\nHost: 127.0.0.1:6443",
        "",
        ((404, PLAIN),),
    ),
    Case(
        "TRACE of a resource",
        "TRACE /api/v1/namespaces HTTP/1.1\r\nHost: {host}\r\nX-Echo: me",
        "",
        ((405, "MethodNotAllowed"),),
    ),
    Case(
        "PROPFIND of a resource",
        "PROPFIND /api/v1/namespaces/team-b-dev HTTP/1.1\r\nHost: {host}",
        "",
        ((405, "MethodNotAllowed"),),
    ),
    Case(
        "lower-case method", "get /api/v1/namespaces HTTP/1.1\r\nHost: {host}", "", ((400, PLAIN),)
    ),
    Case(
        "two spaces in the request line",
        "GET  /api/v1/namespaces HTTP/1.1\r\nHost: {host}\r\nAccept: application/json",
        "",
        ((200, ""),),
    ),
    Case(
        "a space in the target",
        "GET /api/v1/namespaces/team-b-dev HTTP/1.1 x HTTP/1.1\r\nHost: {host}",
        "",
        ((400, PLAIN),),
    ),
    Case("HTTP/2 preface", "PRI * HTTP/2.0", "SM\r\n\r\n", ((400, PLAIN),)),
    Case("HTTP/1.2", "GET /api/v1/namespaces HTTP/1.2\r\nHost: {host}", "", ((400, PLAIN),)),
    Case(
        "a space in a header name",
        "GET /api/v1/namespaces HTTP/1.1\r\nHost: {host}\r\nImpersonate User: admin",
        "",
        ((400, PLAIN),),
    ),
    Case(
        "pipelined: own list, then a foreign name",
        "GET /api/v1/namespaces HTTP/1.1\r\nHost: {host}\r\nAccept: application/json",
        "GET /api/v1/namespaces/team-b-dev HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ((200, ""), (404, "NotFound")),
    ),
]


def case_bytes(world: World, case: Case) -> bytes:
    head = case.head.replace("{host}", host_header(world))
    return (head + "\r\n\r\n" + case.body).encode("latin-1")


def check_answer(answer: RawResponse, code: int, reason: str) -> None:
    assert answer.status == code, answer
    if reason:
        body = orjson.loads(answer.body)
        assert (body["kind"], body["code"], body["reason"]) == ("Status", code, reason), body
    elif code == 400:
        assert_unread(answer.status, answer.body)
    elif code >= 400:  # aiohttp's router, for targets no route has (not a path at all)
        assert not answer.body.startswith(b"{"), answer.body


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_smuggled_requests_never_reach_the_api_server_as_anyone_else(
    world: World, case: Case
) -> None:
    mark = world.mark()
    data = case_bytes(world, case)
    answers = await send_raw(world, data, method=case.head.split(" ")[0], count=len(case.answers))
    assert len(answers) == len(case.answers), answers
    for answer, (code, reason) in zip(answers, case.answers, strict=True):
        check_answer(answer, code, reason)
        assert_nothing_foreign(answer.body, data.decode("latin-1"))
        assert b"Impersonate-User:" not in answer.body  # nothing echoes what the proxy adds
    if case.answers[-1] != ALICE_SECRETS_DENIED:
        assert not [p for p in mark.paths() if "team-b-dev/secrets" in p]
    mark.assert_upstream_clean()
    await probe(world)


@pytest.mark.parametrize("upgrade", ["h2c", "TLS/1.2", "HTTP/2.0"])
@pytest.mark.parametrize(
    "target",
    ["/api/v1/namespaces", "/api/v1/namespaces/team-a-dev/configmaps", "/version"],
    ids=["filtered", "passed through", "non-resource"],
)
async def test_an_upgrade_nobody_grants_is_an_ordinary_answer(
    world: World, upgrade: str, target: str
) -> None:
    """h2c smuggling (an HTTP/2 cleartext upgrade to reach the API server behind the proxy's
    own connection): neither the proxy nor the API server switches; the answer is alice's."""
    data = (
        f"GET {target} HTTP/1.1\r\nHost: {host_header(world)}\r\nAccept: application/json\r\n"
        f"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: {upgrade}\r\n"
        "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    ).encode()
    mark = world.mark()
    answers = await send_raw(world, data, count=1)
    assert [a.status for a in answers] == [200], answers
    assert_nothing_foreign(answers[0].body)
    mark.assert_upstream_clean()
    await probe(world)
