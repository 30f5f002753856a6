"""Authentication through the proxy's listeners, end to end over real TLS.

Every caller kind reaches the emulator impersonated as itself, and RBAC outcomes come from the
upstream; every bad credential is a 401 Status that never reaches the upstream as a request.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from core_support import UNAUTHORIZED, World, assert_status, core_world
from e2e_kubectl import kubectl

from tenant_proxy import pki
from tenant_proxy.emulator.testing import client_ssl

pytestmark = [pytest.mark.e2e]

TEAM_A_PODS = "/api/v1/namespaces/team-a-dev/pods"
TEAM_C_PODS = "/api/v1/namespaces/team-c-dev/pods"


SERVICE_ACCOUNT = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: ci, namespace: team-a-dev}
"""
VIEW_BINDING = """
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: ci-view, namespace: team-a-dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: ServiceAccount, name: ci, namespace: team-a-dev}]
"""


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with core_world(tmp_path) as w:
        yield w


def forbidden_list(user: str, resource: str, namespace: str) -> str:
    return (
        f'{resource} is forbidden: User "{user}" cannot list resource "{resource}" '
        f'in API group "" in the namespace "{namespace}"'
    )


# --- each kind of caller, through kubectl ----------------------------------------------------


@pytest.mark.kubectl
async def test_client_certificate_caller_is_impersonated_and_upstream_rbac_decides(
    world: World,
) -> None:
    alice = world.kubeconfig("alice")
    own = await kubectl(alice, "get", "pods", "-n", "team-a-dev")
    assert own.code == 0, own.err
    foreign = await kubectl(alice, "get", "pods", "-n", "team-b-dev")
    assert foreign.code != 0
    assert forbidden_list("alice", "pods", "team-b-dev") in foreign.err
    arrived = world.emulator.seen_at("/api/v1/namespaces/team-b-dev/pods")
    assert arrived
    assert {(s.impersonate_users, s.impersonate_groups) for s in arrived} == {
        (("alice",), ("tenant-a-devs",))
    }


@pytest.mark.kubectl
async def test_oidc_caller_is_impersonated_with_prefixed_names(world: World) -> None:
    carol = world.kubeconfig("carol")
    own = await kubectl(carol, "get", "pods", "-n", "team-c-dev")
    assert own.code == 0, own.err
    foreign = await kubectl(carol, "get", "pods", "-n", "team-a-dev")
    assert foreign.code != 0
    assert forbidden_list("oidc:carol", "pods", "team-a-dev") in foreign.err
    arrived = world.emulator.seen_at(TEAM_C_PODS)
    assert arrived
    assert all(s.impersonate_users == ("oidc:carol",) for s in arrived)
    assert all("oidc:tenant-c-devs" in s.impersonate_groups for s in arrived)


@pytest.mark.kubectl
async def test_service_account_token_is_reviewed_upstream_and_rbac_comes_from_upstream(
    world: World,
) -> None:
    admin = world.kubeconfig("admin")
    # From manifests: `kubectl create serviceaccount` sends protobuf, which the emulator lacks.
    created = await kubectl(admin, "create", "-f", "-", stdin=SERVICE_ACCOUNT)
    assert created.code == 0, created.err
    issued = await kubectl(admin, "create", "token", "ci", "-n", "team-a-dev")
    assert issued.code == 0, issued.err
    ci = world.demo.token_kubeconfig("ci", issued.out.strip())

    before = await kubectl(ci, "get", "pods", "-n", "team-a-dev")
    assert before.code != 0
    assert forbidden_list("system:serviceaccount:team-a-dev:ci", "pods", "team-a-dev") in (
        before.err
    )
    granted = await kubectl(admin, "create", "-f", "-", stdin=VIEW_BINDING)
    assert granted.code == 0, granted.err
    after = await kubectl(ci, "get", "pods", "-n", "team-a-dev")
    assert after.code == 0, after.err

    assert world.emulator.seen_at("/apis/authentication.k8s.io/v1/tokenreviews")
    pods = world.emulator.seen_at(TEAM_A_PODS)
    assert pods
    assert all(s.impersonate_users == ("system:serviceaccount:team-a-dev:ci",) for s in pods)
    assert all("system:serviceaccounts:team-a-dev" in s.impersonate_groups for s in pods)


# --- bad credentials -----------------------------------------------------------------------


def bad_tokens(world: World) -> dict[str, str]:
    issuer, now = world.issuer, int(time.time())
    carol = issuer.claims("carol", ["tenant-c-devs"])
    return {
        "garbage": "not-a-real-token",
        "jwt-shaped garbage": "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.AAAA",
        "expired": issuer.sign({**carol, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}),
        "not yet valid": issuer.sign({**carol, "nbf": now + 3600, "exp": now + 7200}),
        "wrong issuer": issuer.sign({**carol, "iss": "https://elsewhere.invalid"}),
        "wrong audience": issuer.sign({**carol, "aud": "kubernetes"}),
        "no exp": issuer.sign({k: v for k, v in carol.items() if k != "exp"}),
        "alg none": issuer.unsigned(carol),
        "hs256 keyed with the public key": issuer.hs256_with_public_key(carol),
        "signature of another key": issuer.sign(carol)[:-8] + "AAAAAAAA",
    }


BAD_TOKEN_NAMES = [
    "garbage",
    "jwt-shaped garbage",
    "expired",
    "not yet valid",
    "wrong issuer",
    "wrong audience",
    "no exp",
    "alg none",
    "hs256 keyed with the public key",
    "signature of another key",
]


async def get_as(world: World, path: str, authorization: str | None) -> tuple[int, Any]:
    session = world.session()
    headers = {"Authorization": authorization} if authorization is not None else {}
    async with session.get(path, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_valid_oidc_token_is_accepted(world: World) -> None:
    """The control for the refusals below: the same request with a good token succeeds."""
    token = world.issuer.sign(world.issuer.claims("carol", ["tenant-c-devs"]))
    code, body = await get_as(world, TEAM_C_PODS, f"Bearer {token}")
    assert code == 200, body
    assert body["kind"] == "PodList"


@pytest.mark.parametrize("name", BAD_TOKEN_NAMES)
async def test_bad_bearer_token_is_401_status_and_never_forwarded(world: World, name: str) -> None:
    token = bad_tokens(world)[name]
    code, body = await get_as(world, TEAM_C_PODS, f"Bearer {token}")
    assert (code, body) == (401, UNAUTHORIZED)
    assert world.emulator.seen_at(TEAM_C_PODS) == []


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer ", "Bearer \t ", "", "Basic YWxpY2U6cGFzc3dvcmQ=", "bearer"],
    ids=["bearer-no-token", "bearer-space", "bearer-whitespace", "empty-header", "basic", "lower"],
)
async def test_empty_or_non_bearer_authorization_is_401(world: World, authorization: str) -> None:
    code, body = await get_as(world, TEAM_C_PODS, authorization)
    assert (code, body) == (401, UNAUTHORIZED)
    assert world.emulator.seen_at(TEAM_C_PODS) == []


async def test_no_credentials_at_all_is_401(world: World) -> None:
    code, body = await get_as(world, TEAM_C_PODS, None)
    assert (code, body) == (401, UNAUTHORIZED)
    assert world.emulator.seen_at(TEAM_C_PODS) == []


async def test_empty_token_with_valid_certificate_is_still_401(world: World) -> None:
    """An empty bearer token never falls through to another method (CVE-2023-48312)."""
    session = world.session("alice", ("tenant-a-devs",))
    async with session.get(TEAM_A_PODS, headers={"Authorization": "Bearer "}) as resp:
        assert resp.status == 401
        assert await resp.json() == UNAUTHORIZED


@pytest.mark.parametrize("which", ["another CA", "expired", "not yet valid"])
async def test_bad_client_certificate_is_401(world: World, which: str) -> None:
    """As kube-apiserver: the handshake completes, the request is a 401 Status (not a reset)."""
    stamp = dt.datetime.now(dt.UTC)
    if which == "another CA":
        pair = pki.issue_client_cert(pki.new_ca("rogue-ca"), "admin", ("system:masters",))
    elif which == "expired":
        pair = pki.issue_client_cert(
            world.demo.client_ca, "admin", ("system:masters",),
            not_before=stamp - dt.timedelta(days=10), not_after=stamp - dt.timedelta(days=1),
        )  # fmt: skip
    else:
        pair = pki.issue_client_cert(
            world.demo.client_ca, "admin", ("system:masters",),
            not_before=stamp + dt.timedelta(days=1), not_after=stamp + dt.timedelta(days=10),
        )  # fmt: skip
    tls = client_ssl(world.demo.client_ca.cert_pem, pair)
    for url in (world.tenant_url, world.admin_url):
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as session,
            session.get(f"{url}/api/v1/namespaces") as resp,
        ):
            assert (resp.status, await resp.json()) == (401, UNAUTHORIZED)
    assert not any(s.impersonate_users for s in world.emulator.seen)


# --- client impersonation (kubectl --as) ----------------------------------------------------


@pytest.mark.kubectl
async def test_tenant_cannot_impersonate_another_user(world: World) -> None:
    # --raw: kubectl's discovery client reports a 403 Status on /api only as "unknown".
    result = await kubectl(
        world.kubeconfig("alice"),
        "--as",
        "bob",
        "get",
        "--raw",
        "/api/v1/namespaces/team-b-dev/pods",
    )
    assert result.code != 0
    assert (
        'users "bob" is forbidden: User "alice" cannot impersonate resource "users" '
        'in API group "" at the cluster scope'
    ) in result.err
    assert world.emulator.seen_at("/api/v1/namespaces/team-b-dev/pods") == []


@pytest.mark.kubectl
async def test_admin_may_impersonate_a_tenant_on_the_tenant_listener(world: World) -> None:
    root = world.demo.kubeconfig("root", ["system:masters"])
    namespaces = await kubectl(root, "--as", "bob", "get", "namespaces", "-o", "name")
    assert namespaces.code == 0, namespaces.err
    assert namespaces.names() == {"team-b-dev"}
    foreign = await kubectl(root, "--as", "bob", "get", "pods", "-n", "team-a-dev")
    assert foreign.code != 0
    assert forbidden_list("bob", "pods", "team-a-dev") in foreign.err
    arrived = world.emulator.seen_at(TEAM_A_PODS)
    assert arrived
    assert all(s.impersonate_users == ("bob",) for s in arrived)


# --- the admin listener ---------------------------------------------------------------------


async def test_admin_listener_serves_admins_unfiltered(world: World) -> None:
    session = world.session("admin", ("system:masters",), admin=True)
    async with session.get("/api/v1/namespaces") as resp:
        assert resp.status == 200
        names = {item["metadata"]["name"] for item in (await resp.json())["items"]}
    assert {"team-a-dev", "team-b-dev", "team-c-dev", "platform", "kube-system"} <= names
    async with session.get("/api/v1/nodes") as resp:
        nodes = {item["metadata"]["name"] for item in (await resp.json())["items"]}
    assert nodes == {"node-a1", "node-b1", "node-shared"}
    arrived = world.emulator.seen_at("/api/v1/nodes")
    assert any(s.impersonate_users == ("admin",) for s in arrived)


@pytest.mark.parametrize("caller", ["alice-cert", "carol-oidc"])
async def test_admin_listener_refuses_tenants_with_403_status(world: World, caller: str) -> None:
    if caller == "alice-cert":
        session = world.session("alice", ("tenant-a-devs",), admin=True)
        headers: dict[str, str] = {}
    else:
        session = world.session(admin=True)
        token = world.issuer.sign(world.issuer.claims("carol", ["tenant-c-devs"]))
        headers = {"Authorization": f"Bearer {token}"}
    async with session.get("/api/v1/namespaces", headers=headers) as resp:
        assert resp.status == 403
        assert_status(await resp.json(), 403, "Forbidden")
    assert not any(s.impersonate_users for s in world.emulator.seen)


# --- logs ------------------------------------------------------------------------------------


async def test_request_logs_name_the_caller_but_never_a_token(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    good = world.issuer.sign(world.issuer.claims("carol", ["tenant-c-devs"]))
    bad = bad_tokens(world)["expired"]
    caplog.set_level(logging.DEBUG)
    assert (await get_as(world, TEAM_C_PODS, f"Bearer {good}"))[0] == 200
    assert (await get_as(world, TEAM_C_PODS, f"Bearer {bad}"))[0] == 401
    assert (await get_as(world, TEAM_C_PODS, "Bearer sa-like-secret-0123456789"))[0] == 401
    requests = [r for r in caplog.records if r.getMessage() == "request"]
    fields = [getattr(r, "fields", {}) for r in requests]
    assert {(f.get("user"), f.get("code")) for f in fields} >= {("oidc:carol", 200)}
    assert [f.get("code") for f in fields].count(401) == 2
    everything = "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records)
    for secret in (good, bad, "sa-like-secret-0123456789"):
        assert secret not in everything
        assert secret.split(".")[-1] not in everything


# --- TokenReview: cached, coalesced, paced ------------------------------------------------------

REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"


async def service_account_token(world: World) -> str:
    admin = world.kubeconfig("admin")
    created = await kubectl(admin, "create", "-f", "-", stdin=SERVICE_ACCOUNT)
    assert created.code == 0, created.err
    issued = await kubectl(admin, "create", "token", "ci", "-n", "team-a-dev")
    assert issued.code == 0, issued.err
    return issued.out.strip()


@pytest.mark.kubectl
async def test_concurrent_and_repeated_uses_of_one_token_cost_one_review(world: World) -> None:
    token = await service_account_token(world)
    before = len(world.emulator.seen_at(REVIEWS))
    answers = await asyncio.gather(
        *(get_as(world, "/api/v1/namespaces/team-a-dev", f"Bearer {token}") for _ in range(8))
    )
    answers += [await get_as(world, "/api/v1/namespaces/team-a-dev", f"Bearer {token}")]
    # The SA may not get namespaces: 403 from upstream proves it was authenticated.
    assert {code for code, _ in answers} == {403}
    assert len(world.emulator.seen_at(REVIEWS)) - before == 1


async def test_repeated_invalid_token_is_reviewed_once(world: World) -> None:
    for _ in range(3):
        assert (await get_as(world, TEAM_A_PODS, "Bearer repeated-garbage"))[0] == 401
    assert len(world.emulator.seen_at(REVIEWS)) == 1


async def test_flood_of_invalid_tokens_sends_a_bounded_number_of_reviews(world: World) -> None:
    started = time.monotonic()
    answers = await asyncio.gather(
        *(get_as(world, TEAM_A_PODS, f"Bearer flood-{i:04d}") for i in range(150))
    )
    elapsed = time.monotonic() - started
    codes = [code for code, _ in answers]
    assert set(codes) <= {401, 429}
    assert codes.count(429) > 0
    for code, body in answers:
        assert_status(body, code, "Unauthorized" if code == 401 else "TooManyRequests")
    # Defaults: a burst of 50 reviews, then 20 per second.
    assert len(world.emulator.seen_at(REVIEWS)) <= 50 + 20 * elapsed + 1
    assert world.emulator.seen_at(TEAM_A_PODS) == []


# --- TLS files re-read without a restart ---------------------------------------------------------


async def test_rotated_server_certificate_and_client_ca_apply_to_new_connections(
    world: World,
) -> None:
    assert world.demo.proxy is not None
    pki_dir = world.demo.dir / "pki"
    new_ca = pki.new_ca("rotated-ca")
    new_ca.write(pki_dir / "ca.crt", pki_dir / "ca.key")
    pki.issue_server_cert(new_ca, ["127.0.0.1", "localhost"]).write(
        pki_dir / "server.crt", pki_dir / "server.key"
    )
    assert world.demo.proxy.tls.reload_if_changed()

    new_alice = client_ssl(
        new_ca.cert_pem, pki.issue_client_cert(new_ca, "alice", ["tenant-a-devs"])
    )
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=new_alice)) as session,
        session.get(f"{world.tenant_url}{TEAM_A_PODS}") as resp,
    ):
        assert resp.status == 200
    # The old CA no longer verifies the server.
    old_alice = world.tls("alice", ("tenant-a-devs",))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=old_alice)) as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"{world.tenant_url}{TEAM_A_PODS}") as resp:
                await resp.read()
    # A client certificate of the old CA: handshake done, then 401 (as kube-apiserver).
    mixed = client_ssl(new_ca.cert_pem, pki.issue_client_cert(world.demo.client_ca, "alice"))
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=mixed)) as session,
        session.get(f"{world.tenant_url}{TEAM_A_PODS}") as resp,
    ):
        assert (resp.status, await resp.json()) == (401, UNAUTHORIZED)


async def test_oidc_claims_can_never_name_a_system_user_or_group(world: World) -> None:
    token = world.issuer.sign(world.issuer.claims("system:admin", ["system:masters"]))
    code, body = await get_as(world, TEAM_A_PODS, f"Bearer {token}")
    assert code == 403, body
    assert_status(body, 403, "Forbidden")
    for arrived in world.emulator.seen_at(TEAM_A_PODS):
        assert not any(u.startswith("system:") for u in arrived.impersonate_users)
        assert not any(g.startswith("system:m") for g in arrived.impersonate_groups)
    admin = world.session(admin=True)
    async with admin.get("/api/v1/namespaces", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 403
