"""Header smuggling has no effect: alice, with her client certificate, stays alice.

Requests are written by hand over TLS so that headers arrive exactly as an attacker would send
them (mixed case, duplicated, underscored, named in Connection). Each variant either is refused
by the proxy before anything reaches the API server, or is answered as alice: her list of pods in
team-b-dev is the upstream's RBAC 403 for alice, her list of nodes stays filtered. On the
upstream side, every request carries exactly `Impersonate-User: alice` (or the proxy's own
credentials only), never system:masters (capsule-proxy CVE-2022-23652, Rancher CVE-2021-31999).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from core_support import Seen, World, assert_status, core_world, raw_exchange, upstream_violations

pytestmark = [pytest.mark.e2e]

FOREIGN_PODS = "/api/v1/namespaces/team-b-dev/pods"
NODES = "/api/v1/nodes"
ALICE_DENIED = (
    'pods is forbidden: User "alice" cannot list resource "pods" in API group "" '
    'in the namespace "team-b-dev"'
)
CANNOT_IMPERSONATE = 'User "alice" cannot impersonate resource "users"'


@dataclass(frozen=True)
class Refused:
    """The proxy answers `code`/`reason` itself; the request never reaches the API server."""

    code: int
    reason: str
    fragment: str = ""


AS_ALICE = "as alice"
Expect = Refused | str


@dataclass(frozen=True)
class Variant:
    name: str
    headers: Callable[[World], list[tuple[str, str]]]
    expect: Expect


def fixed(*headers: tuple[str, str]) -> Callable[[World], list[tuple[str, str]]]:
    return lambda _world: list(headers)


def carol_bearer(world: World) -> list[tuple[str, str]]:
    token = world.issuer.sign(world.issuer.claims("carol", ["tenant-c-devs"]))
    return [("Authorization", f"Bearer {token}")]


FORBIDDEN_IMPERSONATION = Refused(403, "Forbidden", CANNOT_IMPERSONATE)
VARIANTS = [
    Variant(
        "impersonate-user admin", fixed(("Impersonate-User", "admin")), FORBIDDEN_IMPERSONATION
    ),
    Variant("lower case", fixed(("impersonate-user", "admin")), FORBIDDEN_IMPERSONATION),
    Variant("mixed case", fixed(("iMPERSONATE-uSER", "admin")), FORBIDDEN_IMPERSONATION),
    Variant(
        "self with system:masters group",
        fixed(("Impersonate-User", "alice"), ("Impersonate-Group", "system:masters")),
        Refused(403, "Forbidden", 'User "alice" cannot impersonate resource'),
    ),
    Variant(
        "group without user",
        fixed(("Impersonate-Group", "system:masters")),
        Refused(500, "InternalError", "without impersonating a user"),
    ),
    Variant(
        "extra without user",
        fixed(("Impersonate-Extra-Scopes", "admin")),
        Refused(500, "InternalError", "without impersonating a user"),
    ),
    Variant(
        "duplicated impersonate-user",
        fixed(("Impersonate-User", "alice"), ("Impersonate-User", "admin")),
        Refused(400, "BadRequest"),
    ),
    Variant("empty impersonate-user", fixed(("Impersonate-User", "")), AS_ALICE),
    Variant("underscore user", fixed(("Impersonate_User", "admin")), AS_ALICE),
    Variant("underscore group", fixed(("Impersonate_Group", "system:masters")), AS_ALICE),
    Variant(
        "connection names impersonate-user and authorization",
        fixed(("Connection", "Impersonate-User, Authorization")),
        AS_ALICE,
    ),
    Variant(
        "connection names impersonate-user, which is also sent",
        fixed(("Connection", "Impersonate-User"), ("Impersonate-User", "admin")),
        FORBIDDEN_IMPERSONATION,
    ),
    Variant(
        "connection names every header the proxy sets",
        fixed(("Connection", "impersonate-user, impersonate-group, authorization, host")),
        AS_ALICE,
    ),
    Variant("extra authorization beside the certificate", carol_bearer, AS_ALICE),
    Variant(
        "two authorization headers",
        fixed(("Authorization", "Bearer one"), ("Authorization", "Bearer two")),
        Refused(401, "Unauthorized"),
    ),
    Variant(
        "front-proxy headers from an untrusted client",
        fixed(("X-Remote-User", "admin"), ("X-Remote-Group", "system:masters")),
        AS_ALICE,
    ),
]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with core_world(tmp_path) as w:
        yield w


async def alice_sends(world: World, target: str, headers: list[tuple[str, str]]) -> tuple[int, Any]:
    resp = await raw_exchange(
        world.tenant_url,
        world.tls("alice", ("tenant-a-devs",)),
        "GET",
        target,
        [("Accept", "application/json"), *headers, ("Connection", "close")],
    )
    return resp.status, resp.json()


def impersonated_as(seen: list[Seen]) -> set[tuple[tuple[str, ...], tuple[str, ...]]]:
    return {(s.impersonate_users, s.impersonate_groups) for s in seen}


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
async def test_smuggled_headers_never_change_who_the_caller_is(
    world: World, variant: Variant
) -> None:
    headers = variant.headers(world)
    pods_code, pods = await alice_sends(world, FOREIGN_PODS, headers)
    nodes_code, nodes = await alice_sends(world, NODES, headers)
    if isinstance(variant.expect, Refused):
        for code, body in ((pods_code, pods), (nodes_code, nodes)):
            assert code == variant.expect.code, body
            assert_status(body, variant.expect.code, variant.expect.reason)
            assert variant.expect.fragment in body["message"]
        assert world.emulator.seen_at(FOREIGN_PODS) == []
    else:
        assert pods_code == 403, pods
        assert pods["message"] == ALICE_DENIED
        assert nodes_code == 200, nodes
        assert {item["metadata"]["name"] for item in nodes["items"]} == {"node-a1"}
        assert impersonated_as(world.emulator.seen_at(FOREIGN_PODS)) == {
            (("alice",), ("tenant-a-devs",))
        }
    impersonated = {s.impersonate_users for s in world.emulator.seen}
    assert impersonated <= {(), ("alice",)}
    assert not any("system:masters" in s.impersonate_groups for s in world.emulator.seen)


async def test_plain_request_is_answered_as_alice(world: World) -> None:
    """The baseline the variants are compared with."""
    pods_code, pods = await alice_sends(world, FOREIGN_PODS, [])
    assert (pods_code, pods["message"]) == (403, ALICE_DENIED)
    own_code, own = await alice_sends(world, "/api/v1/namespaces/team-a-dev/pods", [])
    assert (own_code, own["kind"]) == (200, "PodList")


async def test_the_api_server_hears_the_clients_address_after_its_forwarded_for(
    world: World,
) -> None:
    # As Go's reverse proxy appends it: kube-apiserver's audit then lists the client's chain,
    # the address the proxy saw, and the proxy's own.
    own = "/api/v1/namespaces/team-a-dev/pods"
    code, _ = await alice_sends(world, own, [("X-Forwarded-For", "203.0.113.7")])
    assert code == 200
    code, _ = await alice_sends(world, own + "?limit=7", [])
    assert code == 200
    seen = world.emulator.seen_at(own)
    assert [s.forwarded_for for s in seen[-2:]] == [("203.0.113.7, 127.0.0.1",), ("127.0.0.1",)]


def test_upstream_invariant_flags_unimpersonated_tenant_requests() -> None:
    """The check every world runs on teardown can fail: it flags what it must."""

    def seen(
        method: str, path: str, users: tuple[str, ...] = (), odd: tuple[str, ...] = ()
    ) -> Seen:
        return Seen(method, path, "tenant-proxy", users, (), odd, "")

    ok = [
        seen("GET", "/api/v1/namespaces?watch=true"),
        seen("GET", "/api/v1/namespaces/team-a-dev"),
        seen("GET", "/apis/storage.k8s.io/v1/storageclasses/gold"),
        seen("POST", "/apis/authentication.k8s.io/v1/tokenreviews"),
        seen("GET", "/api/v1/namespaces/team-a-dev/pods", ("alice",)),
    ]
    bad = [
        seen("GET", "/api/v1/namespaces/team-a-dev/pods"),
        seen("GET", "/api/v1/namespaces/team-a-dev/pods", ("",)),
        seen("GET", "/api/v1/namespaces/team-a-dev/pods", ("alice", "admin")),
        seen("POST", "/api/v1/namespaces"),
        seen("GET", "/api/v1/nodes/node-a1/proxy"),
        seen("GET", "/apis/apps/v1/namespaces/team-a-dev/deployments"),
        seen("GET", "/api/v1/nodes", ("alice",), ("Impersonate_User",)),
    ]
    assert upstream_violations(ok + bad) == bad


async def test_a_subprotocol_bearer_token_counts_only_on_a_websocket_upgrade(
    world: World,
) -> None:
    """kube-apiserver reads the token from Sec-WebSocket-Protocol on WebSocket upgrades only; a
    plain request carrying one is refused, and no such token is ever forwarded."""
    token = base64.urlsafe_b64encode(b"any-token").rstrip(b"=").decode()
    headers = {"Sec-WebSocket-Protocol": f"base64url.bearer.authorization.k8s.io.{token},v5"}
    session = world.session()
    async with session.get("/api/v1/namespaces", headers=headers) as resp:
        assert resp.status == 401
    # With a certificate too, the request goes up as alice without the token subprotocol.
    alice = world.session("alice", ("tenant-a-devs",))
    async with alice.get("/api/v1/namespaces/team-a-dev/configmaps", headers=headers) as resp:
        assert resp.status == 401  # two credentials: refused rather than guessed
    assert all("bearer" not in seen.ws_protocols for seen in world.emulator.seen)
