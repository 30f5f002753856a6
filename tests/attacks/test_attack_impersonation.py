"""Impersonation smuggling: alice, with her client certificate, tries to become someone else.

Each request is written by hand over TLS (no client library would send these headers), as
alice, for the pods of team-b-dev, which her RBAC forbids. A case ends one of three ways:
- `AS_ALICE`: the header is dropped and the request goes up as alice: the API server's own 403
  for alice, and upstream saw `Impersonate-User: alice` only;
- `Refused(code, reason, fragment)`: the proxy answers a Status itself, as kube-apiserver would
  for the same headers (its impersonation filter: 403 per SubjectAccessReview, 500 for groups
  without a user); nothing reaches the pods path;
- `Unparsed()`: the HTTP parser refuses the request line or a header with a plain 400 (as Go's
  net/http does for malformed requests), before any handler runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from attack_support import (
    World,
    assert_nothing_foreign,
    assert_unread,
    exchange,
    host_header,
    probe,
    send_raw,
)
from e2e.core_support import assert_status
from orjson import loads

pytestmark = [pytest.mark.e2e]

FOREIGN_PODS = "/api/v1/namespaces/team-b-dev/pods"
ALICE_DENIED = (
    'pods is forbidden: User "alice" cannot list resource "pods" in API group "" '
    'in the namespace "team-b-dev"'
)


@dataclass(frozen=True)
class Refused:
    code: int
    reason: str
    fragment: str = ""


@dataclass(frozen=True)
class Unparsed:
    """A plain-text 400 from the HTTP parser."""


@dataclass(frozen=True)
class AsAlice:
    """Answered as alice: her own 403 from the API server."""


AS_ALICE = AsAlice()
Expect = Refused | Unparsed | AsAlice
CANNOT_USERS = Refused(403, "Forbidden", 'User "alice" cannot impersonate resource "users"')
CANNOT = Refused(403, "Forbidden", 'User "alice" cannot impersonate resource')
NO_USER = Refused(500, "InternalError", "without impersonating a user")


@dataclass(frozen=True)
class Case:
    id: str
    lines: tuple[str, ...]  # raw header lines, exactly as sent
    expect: Expect


CASES = [
    Case("impersonate-user", ("Impersonate-User: admin",), CANNOT_USERS),
    Case("lower case", ("impersonate-user: admin",), CANNOT_USERS),
    Case("upper case", ("IMPERSONATE-USER: admin",), CANNOT_USERS),
    Case("herself", ("Impersonate-User: alice",), CANNOT_USERS),
    Case("a system user", ("Impersonate-User: system:kube-controller-manager",), CANNOT_USERS),
    Case("a list of users", ("Impersonate-User: admin, alice",), CANNOT_USERS),
    Case(
        "herself with system:masters",
        ("Impersonate-User: alice", "Impersonate-Group: system:masters"),
        CANNOT,
    ),
    Case("herself with a uid", ("Impersonate-User: alice", "Impersonate-Uid: 0"), CANNOT),
    Case(
        "herself with an extra",
        ("Impersonate-User: alice", "Impersonate-Extra-Scopes: cluster-admin"),
        CANNOT,
    ),
    Case(
        "percent-encoded extra key",
        ("Impersonate-User: alice", "Impersonate-Extra-%73copes: cluster-admin"),
        CANNOT,
    ),
    Case("group without user", ("Impersonate-Group: system:masters",), NO_USER),
    Case("extra without user", ("Impersonate-Extra-Scopes: admin",), NO_USER),
    Case("uid without user", ("Impersonate-Uid: 0",), NO_USER),
    Case(
        "two users",
        ("Impersonate-User: alice", "Impersonate-User: admin"),
        Refused(400, "BadRequest"),
    ),
    Case(
        "two uids",
        ("Impersonate-User: alice", "Impersonate-Uid: 1", "Impersonate-Uid: 2"),
        Refused(400, "BadRequest"),
    ),
    Case("empty user", ("Impersonate-User: ",), AS_ALICE),
    Case("underscore user", ("Impersonate_User: admin",), AS_ALICE),
    Case("underscore group", ("Impersonate_Group: system:masters",), AS_ALICE),
    Case("underscore extra", ("Impersonate_Extra_Scopes: admin",), AS_ALICE),
    Case("underscore uid", ("Impersonate_Uid: 0",), AS_ALICE),
    Case(
        "underscore user beside a dash one",
        ("Impersonate_User: admin", "Impersonate-User: "),
        AS_ALICE,
    ),
    Case("dotted user", ("Impersonate.User: admin",), AS_ALICE),
    Case(
        "connection names it, it is not sent",
        ("Connection: Impersonate-User, Impersonate-Group", "Impersonate_User: admin"),
        AS_ALICE,
    ),
    Case(
        "connection names it and it is sent",
        ("Connection: Impersonate-User", "Impersonate-User: admin"),
        CANNOT_USERS,
    ),
    Case(
        "connection names every credential header",
        ("Connection: authorization, impersonate-group, x-remote-user, host, content-length",),
        AS_ALICE,
    ),
    Case(
        "x-remote-user and group",
        ("X-Remote-User: admin", "X-Remote-Group: system:masters"),
        AS_ALICE,
    ),
    Case(
        "x-remote-extra", ("X-Remote-User: alice", "X-Remote-Extra-Scopes: cluster-admin"), AS_ALICE
    ),
    Case("x_remote_user", ("X_Remote_User: admin",), AS_ALICE),
    Case(
        "x-forwarded identity",
        ("X-Forwarded-User: admin", "X-Forwarded-Groups: system:masters"),
        AS_ALICE,
    ),
    Case("obs-fold", ("X-Note: a", " Impersonate-User: admin"), Unparsed()),
    Case("tab fold", ("X-Note: a", "\tImpersonate-User: admin"), Unparsed()),
    Case("space before colon", ("Impersonate-User : admin",), Unparsed()),
    Case("tab before colon", ("Impersonate-User\t: admin",), Unparsed()),
    Case("greek capital iota", ("\u0399mpersonate-User: admin",), Unparsed()),
    Case("NUL splits a value", ("X-A: b\x00Impersonate-User: admin",), Unparsed()),
    Case("bare CR splits a value", ("X-A: b\rImpersonate-User: admin",), Unparsed()),
]


def raw_request(world: World, lines: tuple[str, ...], eol: str = "\r\n") -> bytes:
    head = [
        f"GET {FOREIGN_PODS} HTTP/1.1",
        f"Host: {host_header(world)}",
        "Accept: application/json",
        *lines,
        "Connection: close",
    ]
    return (eol.join(head) + eol + eol).encode("utf-8")


async def check(world: World, expect: Expect, data: bytes) -> None:
    mark = world.mark()
    responses = await send_raw(world, data)
    assert len(responses) == 1, responses
    answer = responses[0]
    if isinstance(expect, Unparsed):
        assert_unread(answer.status, answer.body)
    elif isinstance(expect, Refused):
        assert answer.status == expect.code, answer.body
        body = loads(answer.body)
        assert_status(body, expect.code, expect.reason)
        assert expect.fragment in body["message"]
    else:
        assert answer.status == 403, answer.body
        assert loads(answer.body)["message"] == ALICE_DENIED
        assert any(path.startswith(FOREIGN_PODS) for path in mark.paths())
    if not isinstance(expect, AsAlice):
        assert not [p for p in mark.paths() if p.startswith(FOREIGN_PODS)]
    assert_nothing_foreign(answer.body, FOREIGN_PODS)
    mark.assert_upstream_clean()
    await probe(world)
    mark.assert_upstream_clean()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_smuggled_impersonation_never_changes_who_alice_is(world: World, case: Case) -> None:
    await check(world, case.expect, raw_request(world, case.lines))


async def test_bare_line_feeds_cannot_hide_a_header(world: World) -> None:
    await check(world, Unparsed(), raw_request(world, ("Impersonate-User: admin",), eol="\n"))


async def test_impersonation_in_chunked_trailers_is_ignored(world: World) -> None:
    """Trailers are never headers: the configmap is created as alice in her own namespace."""
    body = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"trailered"}}'
    target = "/api/v1/namespaces/team-a-dev/configmaps"
    data = (
        (
            f"POST {target} HTTP/1.1\r\nHost: {host_header(world)}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            "Trailer: Impersonate-User, Impersonate-Group\r\nConnection: close\r\n\r\n"
            f"{len(body):x}\r\n"
        ).encode()
        + body
        + (
            b"\r\n0\r\nImpersonate-User: admin\r\nImpersonate-Group: system:masters\r\n"
            b"X-Remote-User: admin\r\n\r\n"
        )
    )
    mark = world.mark()
    responses = await send_raw(world, data, method="POST")
    assert [r.status for r in responses] == [201], responses
    created = [r for r in mark.since() if r.path == target]
    assert [r.values("Impersonate-User") for r in created] == [["alice"]]
    mark.assert_upstream_clean()
    await probe(world)


async def test_a_subprotocol_token_beside_a_certificate_is_refused(world: World) -> None:
    """Two credentials (her certificate and a WebSocket bearer subprotocol on a plain GET):
    refused rather than guessed, and the subprotocol never travels."""
    mark = world.mark()
    token = "YWRtaW4tdG9rZW4"  # base64url("admin-token")
    answer = await exchange(
        world,
        "GET",
        FOREIGN_PODS,
        [("Sec-WebSocket-Protocol", f"base64url.bearer.authorization.k8s.io.{token}, v5")],
    )
    assert answer.status == 401
    assert_status(loads(answer.body), 401, "Unauthorized")
    assert not [r for r in mark.since() if r.values("Sec-WebSocket-Protocol")]
    await probe(world)


async def test_a_refused_impersonation_costs_one_review_however_many_groups(
    world: World,
) -> None:
    """One request naming 100 groups must not become 101 SubjectAccessReviews: as
    kube-apiserver's impersonation filter, the user is checked first and a denial ends it."""
    groups = [f"Impersonate-Group: g-{os.urandom(6).hex()}" for _ in range(100)]
    mark = world.mark()
    await check(world, CANNOT_USERS, raw_request(world, ("Impersonate-User: admin", *groups)))
    reviews = [p for p in mark.paths() if p.endswith("/subjectaccessreviews")]
    assert len(reviews) <= 1
