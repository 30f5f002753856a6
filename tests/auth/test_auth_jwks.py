from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from auth_fakes import Issuer
from cryptography.hazmat.primitives.asymmetric import rsa

from tenant_proxy.auth.base import AuthenticationError, Credentials
from tenant_proxy.auth.jwks import JWKSCache, parse_jwks
from tenant_proxy.auth.oidc import OIDCAuthenticator, OIDCIssuerSettings

DISCOVERY = "/.well-known/openid-configuration"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def caches() -> AsyncIterator[list[JWKSCache]]:
    made: list[JWKSCache] = []
    yield made
    for cache in made:
        await cache.close()


@pytest.fixture
def make_cache(issuer: Issuer, caches: list[JWKSCache]) -> Callable[..., JWKSCache]:
    def factory(**kwargs: Any) -> JWKSCache:
        caches.append(JWKSCache(issuer.url, ca_file=str(issuer.ca_file), **kwargs))
        return caches[-1]

    return factory


@pytest.fixture
async def oidc(issuer: Issuer) -> AsyncIterator[Callable[..., OIDCAuthenticator]]:
    made: list[OIDCAuthenticator] = []

    def factory(**overrides: Any) -> OIDCAuthenticator:
        settings = OIDCIssuerSettings(
            issuer.url, ("tenant-proxy",), ca_file=str(issuer.ca_file), **overrides
        )
        made.append(OIDCAuthenticator([settings]))
        return made[-1]

    yield factory
    for authenticator in made:
        await authenticator.close()


def _random_kid_tokens(issuer: Issuer, count: int) -> list[str]:
    issuer.add_key("stranger", rsa.generate_private_key(65537, 2048), publish=False)
    tokens = []
    for _ in range(count):
        token = issuer.token(kid="stranger", headers={"kid": uuid.uuid4().hex})
        tokens.append(token)
    return tokens


async def _refused(authenticator: OIDCAuthenticator, token: str) -> bool:
    try:
        await authenticator.authenticate(Credentials(bearer_token=token))
    except AuthenticationError:
        return True
    return False


async def test_flood_of_random_kids_fetches_at_most_once_per_interval(
    issuer: Issuer, oidc: Callable[..., OIDCAuthenticator]
) -> None:
    authenticator = oidc(jwks_min_refetch_interval=3600)
    tokens = _random_kid_tokens(issuer, 40)
    first = await asyncio.gather(*(_refused(authenticator, t) for t in tokens[:20]))
    assert all(first)
    assert issuer.requests["/keys"] == 1  # concurrent lookups shared one fetch
    for token in tokens[20:]:
        assert await _refused(authenticator, token)
    assert issuer.requests["/keys"] == 1
    assert await authenticator.authenticate(Credentials(bearer_token=issuer.token())) is not None


async def test_unknown_kid_refetches_after_the_minimum_interval(
    issuer: Issuer, make_cache: Callable[..., JWKSCache], rsa_key: rsa.RSAPrivateKey
) -> None:
    clock = FakeClock()
    cache = make_cache(min_refetch_interval=10, clock=clock)
    assert [k.kid for k in await cache.candidates("rsa-1", "RSA")] == ["rsa-1"]
    issuer.add_key("rsa-2", rsa_key)
    clock.now += 5
    assert await cache.candidates("rsa-2", "RSA") == ()
    assert issuer.requests["/keys"] == 1
    clock.now += 6
    assert [k.kid for k in await cache.candidates("rsa-2", "RSA")] == ["rsa-2"]
    assert issuer.requests["/keys"] == 2


async def test_keys_are_refreshed_periodically_in_the_background(
    issuer: Issuer, make_cache: Callable[..., JWKSCache]
) -> None:
    clock = FakeClock()
    cache = make_cache(refresh_interval=60, clock=clock)
    await cache.candidates("rsa-1", "RSA")
    clock.now += 30
    await cache.candidates("rsa-1", "RSA")
    assert issuer.requests["/keys"] == 1
    clock.now += 31
    found = await cache.candidates("rsa-1", "RSA")
    assert [k.kid for k in found] == ["rsa-1"]  # served from cache, not waiting for the fetch
    await issuer.requests.wait_for("/keys", 2)


async def test_cached_keys_keep_working_while_the_issuer_is_down(
    issuer: Issuer, oidc: Callable[..., OIDCAuthenticator]
) -> None:
    authenticator = oidc(jwks_min_refetch_interval=0, jwks_refresh_interval=0)
    token = issuer.token()
    assert await authenticator.authenticate(Credentials(bearer_token=token)) is not None
    issuer.down = True
    (unknown,) = _random_kid_tokens(issuer, 1)
    assert await _refused(authenticator, unknown)
    assert issuer.requests[DISCOVERY] >= 2  # it did try, and failed
    identity = await authenticator.authenticate(Credentials(bearer_token=token))
    assert identity is not None
    assert identity.user.endswith("#alice")


async def test_issuer_down_from_the_start_refuses_tokens(
    issuer: Issuer, oidc: Callable[..., OIDCAuthenticator]
) -> None:
    issuer.down = True
    assert await _refused(oidc(), issuer.token())


async def test_discovery_naming_another_issuer_yields_no_keys(
    issuer: Issuer, caches: list[JWKSCache]
) -> None:
    # Our URL with a path the discovery document does not claim.
    cache = JWKSCache(f"{issuer.url}/tenant", ca_file=str(issuer.ca_file))
    caches.append(cache)
    assert await cache.candidates("rsa-1", "RSA") == ()
    assert issuer.requests["/keys"] == 0


async def test_static_jwks_file_needs_no_issuer(
    issuer: Issuer, oidc: Callable[..., OIDCAuthenticator], tmp_path: Path
) -> None:
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(issuer.jwks()))
    issuer.down = True
    authenticator = oidc(jwks_file=str(jwks_file))
    assert await authenticator.authenticate(Credentials(bearer_token=issuer.token())) is not None
    assert issuer.requests[DISCOVERY] == 0


def test_parse_jwks_skips_symmetric_and_encryption_keys(issuer: Issuer) -> None:
    document = issuer.jwks()
    keys = list(document["keys"])  # type: ignore[call-overload]
    keys.append({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"})
    keys.append({**keys[0], "kid": "enc", "use": "enc"})
    keys.append({"kty": "RSA", "kid": "broken"})
    parsed = parse_jwks({"keys": keys})
    assert sorted(k.kid or "" for k in parsed) == ["ec-1", "rsa-1"]
