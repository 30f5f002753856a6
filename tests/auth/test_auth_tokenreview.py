from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from auth_fakes import Upstream
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.auth.base import AuthenticationError, Credentials
from tenant_proxy.auth.tokenreview import (
    ReviewRateLimited,
    TokenBucket,
    TokenReviewAuthenticator,
    TokenReviewSettings,
    identity_from_status,
)
from tenant_proxy.identity import Identity

PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
SA_USER: dict[str, Any] = {
    "username": "system:serviceaccount:team-a-dev:ci-bot",
    "uid": "af1bc8eb-9241-448d-9217-889fdcd3e89a",
    "groups": ["system:serviceaccounts", "system:serviceaccounts:team-a-dev"],
    "extra": {"authentication.kubernetes.io/pod-name": ["ci-0"]},
}
Serve = Callable[[web.Application, ssl.SSLContext | None], Awaitable[str]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _jwt_with_exp(exp: float) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part({'exp': int(exp)})}.c2ln"


async def _auth(authenticator: TokenReviewAuthenticator, token: str) -> Identity | None:
    return await authenticator.authenticate(Credentials(bearer_token=token))


Fixture = tuple[Upstream, Callable[[str], Awaitable[dict[str, Any]]]]


async def test_authenticated_review_yields_its_user_groups_extra_and_uid(
    upstream: Fixture,
) -> None:
    fake, review = upstream
    fake.valid["sa-token"] = SA_USER
    identity = await _auth(TokenReviewAuthenticator(review), "sa-token")
    assert identity == Identity(
        user=SA_USER["username"],
        groups=tuple(SA_USER["groups"]),
        extra={"authentication.kubernetes.io/pod-name": ("ci-0",)},
        uid=SA_USER["uid"],
        method="tokenreview",
    )


async def test_unauthenticated_review_is_refused(upstream: Fixture) -> None:
    _, review = upstream
    with pytest.raises(AuthenticationError, match="rejected"):
        await _auth(TokenReviewAuthenticator(review), "garbage")


@pytest.mark.parametrize(
    "status",
    [
        {"user": {"username": "admin", "groups": ["system:masters"]}},  # CVE-2023-48312
        {"authenticated": "true", "user": {"username": "admin"}},
        {"authenticated": 1, "user": {"username": "admin"}},
        {"authenticated": True, "user": {"username": ""}},
        {"authenticated": True, "user": {}},
        {"authenticated": True},
        {"authenticated": True, "user": "admin"},
    ],
)
def test_only_authenticated_true_with_a_user_counts(status: dict[str, Any]) -> None:
    assert identity_from_status(status) is None


def test_required_audiences_must_be_confirmed() -> None:
    status = {"authenticated": True, "user": {"username": "bob"}}
    wanted = ("https://kubernetes.default.svc",)
    assert identity_from_status(status) is not None
    assert identity_from_status(status, wanted) is None
    assert identity_from_status({**status, "audiences": ["other"]}, wanted) is None
    assert identity_from_status({**status, "audiences": list(wanted)}, wanted) is not None


async def test_positive_result_cached_for_60_seconds(upstream: Fixture) -> None:
    fake, review = upstream
    fake.valid["sa-token"] = SA_USER
    clock = FakeClock()
    authenticator = TokenReviewAuthenticator(review, clock=clock)
    await _auth(authenticator, "sa-token")
    clock.now += 59
    await _auth(authenticator, "sa-token")
    assert fake.calls[PATH] == 1
    clock.now += 2
    await _auth(authenticator, "sa-token")
    assert fake.calls[PATH] == 2


async def test_positive_result_never_outlives_the_token_exp(upstream: Fixture) -> None:
    fake, review = upstream
    clock = FakeClock()
    token = _jwt_with_exp(clock.now + 5)
    fake.valid[token] = SA_USER
    authenticator = TokenReviewAuthenticator(review, clock=clock)
    await _auth(authenticator, token)
    clock.now += 4
    await _auth(authenticator, token)
    assert fake.calls[PATH] == 1
    clock.now += 2
    await _auth(authenticator, token)
    assert fake.calls[PATH] == 2


async def test_negative_result_cached_for_10_seconds(upstream: Fixture) -> None:
    fake, review = upstream
    clock = FakeClock()
    authenticator = TokenReviewAuthenticator(review, clock=clock)
    for _ in range(3):
        with pytest.raises(AuthenticationError):
            await _auth(authenticator, "garbage")
    assert fake.calls[PATH] == 1
    clock.now += 11
    fake.valid["garbage"] = SA_USER  # e.g. a token that became valid
    assert await _auth(authenticator, "garbage") is not None
    assert fake.calls[PATH] == 2


async def test_errors_are_never_cached(upstream: Fixture) -> None:
    fake, review = upstream
    fake.valid["sa-token"] = SA_USER
    fake.failing = True
    authenticator = TokenReviewAuthenticator(review)
    with pytest.raises(AuthenticationError, match="review failed"):
        await _auth(authenticator, "sa-token")
    fake.failing = False
    assert await _auth(authenticator, "sa-token") is not None
    assert fake.calls[PATH] == 2


async def test_concurrent_reviews_of_one_token_are_coalesced(upstream: Fixture) -> None:
    fake, review = upstream
    fake.valid["sa-token"] = SA_USER
    fake.gate = asyncio.Event()
    authenticator = TokenReviewAuthenticator(review)
    waiters = [asyncio.create_task(_auth(authenticator, "sa-token")) for _ in range(25)]
    await fake.calls.wait_for(PATH, 1)
    fake.gate.set()
    identities = await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert {i.user for i in identities if i} == {SA_USER["username"]}
    assert fake.calls[PATH] == 1


async def test_a_departing_caller_does_not_cancel_the_shared_review(upstream: Fixture) -> None:
    fake, review = upstream
    fake.valid["sa-token"] = SA_USER
    fake.gate = asyncio.Event()
    authenticator = TokenReviewAuthenticator(review)
    leaver = asyncio.create_task(_auth(authenticator, "sa-token"))
    stayer = asyncio.create_task(_auth(authenticator, "sa-token"))
    await fake.calls.wait_for(PATH, 1)
    leaver.cancel()
    fake.gate.set()
    assert await asyncio.wait_for(stayer, 5) is not None
    assert fake.calls[PATH] == 1


async def test_flood_of_distinct_invalid_tokens_is_rate_limited(upstream: Fixture) -> None:
    fake, review = upstream
    clock = FakeClock()
    settings = TokenReviewSettings(reviews_per_second=2, burst=5)
    authenticator = TokenReviewAuthenticator(review, settings, clock=clock)
    outcomes: list[str] = []
    for i in range(30):
        try:
            await _auth(authenticator, f"invalid-{i}")
        except ReviewRateLimited as err:
            outcomes.append(f"limited:{err.retry_after}")
        except AuthenticationError:
            outcomes.append("rejected")
    assert fake.calls[PATH] == 5
    assert outcomes.count("rejected") == 5
    assert outcomes.count("limited:1") == 25
    clock.now += 1
    fake.valid["sa-token"] = SA_USER
    assert await _auth(authenticator, "sa-token") is not None
    assert fake.calls[PATH] == 6


async def test_cached_tokens_keep_working_during_a_flood(upstream: Fixture) -> None:
    fake, review = upstream
    fake.valid["sa-token"] = SA_USER
    settings = TokenReviewSettings(reviews_per_second=0.001, burst=1)
    authenticator = TokenReviewAuthenticator(review, settings, clock=FakeClock())
    assert await _auth(authenticator, "sa-token") is not None
    with pytest.raises(ReviewRateLimited):
        await _auth(authenticator, "invalid")
    assert await _auth(authenticator, "sa-token") is not None


async def test_cache_is_bounded_lru(upstream: Fixture) -> None:
    fake, review = upstream
    for name in "abcd":
        fake.valid[name] = SA_USER
    authenticator = TokenReviewAuthenticator(review, TokenReviewSettings(cache_size=3))
    for name in "abc":
        await _auth(authenticator, name)
    await _auth(authenticator, "a")  # a is now the most recently used
    await _auth(authenticator, "d")  # evicts b
    assert fake.calls[PATH] == 4
    await _auth(authenticator, "a")
    assert fake.calls[PATH] == 4
    await _auth(authenticator, "b")
    assert fake.calls[PATH] == 5


def _contains(value: object, needle: str, seen: set[int]) -> bool:
    if id(value) in seen:
        return False
    seen.add(id(value))
    if isinstance(value, str):
        return needle in value
    if isinstance(value, dict):
        return any(
            _contains(k, needle, seen) or _contains(v, needle, seen) for k, v in value.items()
        )
    if isinstance(value, list | tuple | set):
        return any(_contains(v, needle, seen) for v in value)
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return _contains(vars(value), needle, seen)
    return False


async def test_no_raw_token_is_kept_or_logged(
    upstream: Fixture, caplog: pytest.LogCaptureFixture
) -> None:
    fake, review = upstream
    secret_ok, secret_bad = "secret-token-ok-3b1f", "secret-token-bad-9c2e"
    fake.valid[secret_ok] = SA_USER
    authenticator = TokenReviewAuthenticator(review)
    caplog.set_level(logging.DEBUG)
    await _auth(authenticator, secret_ok)
    with pytest.raises(AuthenticationError) as bad:
        await _auth(authenticator, secret_bad)
    fake.failing = True
    with pytest.raises(AuthenticationError) as failed:
        await _auth(authenticator, "secret-token-failing-77aa")
    assert not _contains(vars(authenticator)["_cache"], "secret-token", set())
    assert "secret-token" not in caplog.text
    assert "secret-token" not in str(bad.value) + str(failed.value)


@given(st.floats(0.1, 100), st.integers(1, 50), st.lists(st.floats(0, 5), max_size=60))
def test_token_bucket_never_exceeds_burst_plus_rate(
    rate: float, burst: int, steps: list[float]
) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate, burst, clock)
    start, taken = clock.now, 0
    for step in steps:
        clock.now += step
        while bucket.take() == 0:
            taken += 1
    assert taken <= burst + (clock.now - start) * rate + 1e-6
