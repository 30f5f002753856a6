from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tenant_proxy import status
from tenant_proxy.auth.delegation import (
    CachedAccessReview,
    Delegation,
    ImpersonationRequest,
    authorize_impersonation,
    requested_impersonation,
    sar_spec,
)
from tenant_proxy.identity import Identity

SAR = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
ALICE = Identity(user="alice", groups=("tenant-a-devs",), method="x509")
REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "impersonate-403-not-allowed.txt"
Serve = Callable[[web.Application, ssl.SSLContext | None], Awaitable[str]]
Review = Callable[[Identity, Mapping[str, str]], Awaitable[bool]]


class Authorizer:
    """A fake SubjectAccessReview endpoint: allows what `allowed` lists, counts calls."""

    def __init__(self) -> None:
        self.allowed: set[tuple[str, str, str]] = set()  # (user, resource, name)
        self.calls = 0
        self.inflight = 0
        self.peak = 0
        self.hold_until: int | None = None  # answer only once this many are in flight
        self.failing = False
        self._changed = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        spec = body["spec"]
        attrs = spec["resourceAttributes"]
        async with self._changed:
            self.calls += 1
            self.inflight += 1
            self.peak = max(self.peak, self.inflight)
            self._changed.notify_all()
            if self.hold_until is not None:
                target = self.hold_until
                await asyncio.wait_for(self._changed.wait_for(lambda: self.peak >= target), 5)
            self.inflight -= 1
        if self.failing:
            return web.json_response({"kind": "Status", "code": 500}, status=500)
        key = (spec["user"], attrs["resource"], attrs.get("name", ""))
        if attrs["resource"] == "userextras":
            key = (spec["user"], f"userextras/{attrs['subresource']}", attrs.get("name", ""))
        allowed = attrs["verb"] == "impersonate" and key in self.allowed
        return web.json_response({**body, "status": {"allowed": allowed}}, status=201)


@pytest.fixture
async def authorizer(
    serve: Serve, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> AsyncIterator[tuple[Authorizer, Review]]:
    fake = Authorizer()
    app = web.Application()
    app.router.add_post(SAR, fake.handle)
    url = await serve(app, server_tls)
    async with aiohttp.ClientSession() as session:

        async def review(identity: Identity, attrs: Mapping[str, str]) -> bool:
            sar = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": identity.user,
                    "groups": list(identity.groups),
                    "resourceAttributes": dict(attrs),
                },
            }
            async with session.post(url + SAR, json=sar, ssl=client_tls) as resp:
                resp.raise_for_status()
                return bool((await resp.json())["status"]["allowed"])

        yield fake, review


Fixture = tuple[Authorizer, Review]


def test_no_impersonation_headers_means_no_request() -> None:
    assert requested_impersonation({"Authorization": "Bearer x"}) is None
    assert requested_impersonation([("Impersonate-User", "")]) is None


def test_headers_become_a_request() -> None:
    request = requested_impersonation(
        [
            ("impersonate-user", "bob"),
            ("Impersonate-Group", "devs"),
            ("IMPERSONATE-GROUP", "ops"),
            ("Impersonate-Extra-Example.com%2FTeam", "a"),
            ("Impersonate-Extra-example.com%2fteam", "b"),
            ("Impersonate-Uid", "u-1"),
        ]
    )
    assert request == ImpersonationRequest(
        user="bob", groups=("devs", "ops"), extra={"example.com/team": ("a", "b")}, uid="u-1"
    )


@pytest.mark.parametrize(
    "headers",
    [
        [("Impersonate-Group", "system:masters")],
        [("Impersonate-Extra-Scopes", "view")],
        [("Impersonate-Uid", "1234")],
        [("Impersonate-User", ""), ("Impersonate-Group", "system:masters")],
    ],
)
def test_groups_extra_or_uid_without_a_user_are_refused_as_the_real_server(
    headers: list[tuple[str, str]],
) -> None:
    with pytest.raises(status.ApiError) as err:
        requested_impersonation(headers)
    assert err.value.code == 500
    assert err.value.reason == "InternalError"
    assert err.value.message.startswith("Internal error occurred: requested [")
    assert err.value.message.endswith("] without impersonating a user")


def test_repeated_user_is_refused() -> None:
    with pytest.raises(status.ApiError) as err:
        requested_impersonation([("Impersonate-User", "bob"), ("Impersonate-User", "admin")])
    assert err.value.code == 400


def _reference_body() -> dict[str, Any]:
    text = REFERENCE.read_text()
    return json.loads(text[text.index("{") :])  # type: ignore[no-any-return]


async def test_denied_user_gets_the_real_servers_403(authorizer: Fixture) -> None:
    _, review = authorizer
    with pytest.raises(status.ApiError) as err:
        await authorize_impersonation(ALICE, ImpersonationRequest(user="bob"), review)
    assert err.value.body() == _reference_body()


async def test_allowed_user_and_groups_become_the_identity(authorizer: Fixture) -> None:
    fake, review = authorizer
    fake.allowed |= {("alice", "users", "bob"), ("alice", "groups", "devs")}
    fake.allowed.add(("alice", "userextras/scopes", "view"))
    fake.allowed.add(("alice", "uids", "u-1"))
    request = ImpersonationRequest(
        user="bob", groups=("devs",), extra={"scopes": ("view",)}, uid="u-1"
    )
    identity = await authorize_impersonation(ALICE, request, review)
    assert identity == Identity(
        user="bob", groups=("devs",), extra={"scopes": ("view",)}, uid="u-1", method="x509"
    )
    assert fake.calls == 4


@pytest.mark.parametrize(
    ("request_", "message", "details"),
    [
        (
            ImpersonationRequest(user="bob", groups=("devs", "system:masters")),
            'groups "system:masters" is forbidden: User "alice" cannot impersonate resource '
            '"groups" in API group "" at the cluster scope',
            {"name": "system:masters", "kind": "groups"},
        ),
        (
            ImpersonationRequest(user="bob", extra={"scopes": ("admin",)}),
            'userextras.authentication.k8s.io "admin" is forbidden: User "alice" cannot '
            'impersonate resource "userextras/scopes" in API group "authentication.k8s.io" '
            "at the cluster scope",
            {"name": "admin", "group": "authentication.k8s.io", "kind": "userextras"},
        ),
        (
            ImpersonationRequest(user="system:serviceaccount:team-b-dev:deployer"),
            'serviceaccounts "deployer" is forbidden: User "alice" cannot impersonate resource '
            '"serviceaccounts" in API group "" in the namespace "team-b-dev"',
            {"name": "deployer", "kind": "serviceaccounts"},
        ),
    ],
)
async def test_any_denied_part_is_403_naming_it(
    authorizer: Fixture,
    request_: ImpersonationRequest,
    message: str,
    details: dict[str, str],
) -> None:
    fake, review = authorizer
    fake.allowed |= {("alice", "users", "bob"), ("alice", "groups", "devs")}
    with pytest.raises(status.ApiError) as err:
        await authorize_impersonation(ALICE, request_, review)
    assert (err.value.code, err.value.message, err.value.details) == (403, message, details)


async def test_service_account_gets_its_groups(authorizer: Fixture) -> None:
    fake, review = authorizer
    fake.allowed.add(("alice", "serviceaccounts", "ci-bot"))
    request = ImpersonationRequest(user="system:serviceaccount:team-a-dev:ci-bot")
    identity = await authorize_impersonation(ALICE, request, review)
    assert identity.groups == ("system:serviceaccounts", "system:serviceaccounts:team-a-dev")


async def test_reviews_run_concurrently(authorizer: Fixture) -> None:
    fake, review = authorizer
    groups = tuple(f"group-{i}" for i in range(30))
    fake.allowed.add(("alice", "users", "bob"))
    fake.allowed |= {("alice", "groups", g) for g in groups}
    # The fake answers nothing until all 31 reviews are in flight: sequential reviews time out.
    fake.hold_until = 31
    identity = await authorize_impersonation(
        ALICE, ImpersonationRequest(user="bob", groups=groups), review
    )
    assert identity.groups == groups
    assert fake.peak == 31


async def test_failed_review_denies(authorizer: Fixture) -> None:
    fake, review = authorizer
    fake.allowed.add(("alice", "users", "bob"))
    fake.failing = True
    with pytest.raises(status.ApiError) as err:
        await authorize_impersonation(ALICE, ImpersonationRequest(user="bob"), review)
    assert err.value.code == 403


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_cached_reviews_are_reused_briefly(authorizer: Fixture) -> None:
    fake, review = authorizer
    fake.allowed |= {("alice", "users", "bob"), ("alice", "groups", "devs")}
    clock = FakeClock()
    cached = CachedAccessReview(review, ttl=10, clock=clock)
    request = ImpersonationRequest(user="bob", groups=("devs", "ops"))
    for _ in range(3):
        with pytest.raises(status.ApiError):
            await authorize_impersonation(ALICE, request, cached)
    assert fake.calls == 3
    clock.now += 11
    fake.allowed.add(("alice", "groups", "ops"))
    identity = await authorize_impersonation(ALICE, request, cached)
    assert identity.user == "bob"
    assert fake.calls == 6


async def test_cached_reviews_coalesce_and_never_cache_errors(authorizer: Fixture) -> None:
    fake, review = authorizer
    fake.allowed.add(("alice", "users", "bob"))
    cached = CachedAccessReview(review)
    attrs = {"verb": "impersonate", "group": "", "resource": "users", "name": "bob"}
    answers = await asyncio.gather(*(cached(ALICE, attrs) for _ in range(20)))
    assert all(answers)
    assert fake.calls == 1
    fake.failing = True
    other = {**attrs, "name": "carol"}
    with pytest.raises(aiohttp.ClientResponseError):
        await cached(ALICE, other)
    fake.failing = False
    assert await cached(ALICE, other) is False
    assert fake.calls == 3


async def test_cache_keys_include_the_callers_groups(authorizer: Fixture) -> None:
    fake, review = authorizer
    cached = CachedAccessReview(review)
    attrs = {"verb": "impersonate", "group": "", "resource": "users", "name": "bob"}
    await cached(ALICE, attrs)
    await cached(Identity(user="alice", groups=("other",)), attrs)
    assert fake.calls == 2


async def test_delegation_passes_callers_through_and_authorizes_requests(
    authorizer: Fixture,
) -> None:
    fake, review = authorizer
    delegate = Delegation(CachedAccessReview(review))
    assert await delegate(ALICE, {"Accept": "application/json"}) is ALICE
    assert fake.calls == 0
    with pytest.raises(status.ApiError) as err:
        await delegate(ALICE, [("Impersonate-User", "admin")])
    assert err.value.code == 403
    fake.allowed.add(("alice", "users", "bob"))
    became = await delegate(ALICE, [("Impersonate-User", "bob")])
    assert (became.user, became.groups) == ("bob", ())


def test_sar_spec_carries_the_whole_caller() -> None:
    caller = Identity(user="alice", groups=("g",), extra={"scopes": ("view",)}, uid="u-1")
    attrs = {"verb": "impersonate", "group": "", "resource": "users", "name": "bob"}
    assert sar_spec(caller, attrs) == {
        "user": "alice",
        "groups": ["g"],
        "extra": {"scopes": ["view"]},
        "uid": "u-1",
        "resourceAttributes": attrs,
    }
    assert sar_spec(Identity(user="alice"), attrs) == {"user": "alice", "resourceAttributes": attrs}
