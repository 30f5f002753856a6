"""The chain as the proxy builds it: x509, static tokens, OIDC, TokenReview, over real sockets."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from auth_fakes import TOKENREVIEWS, Issuer, Upstream
from cryptography import x509

from tenant_proxy.auth.base import AuthenticationError, Credentials, ForbiddenIdentity
from tenant_proxy.auth.chain import AuthChain
from tenant_proxy.auth.oidc import OIDCAuthenticator, OIDCIssuerSettings
from tenant_proxy.auth.static_tokens import StaticTokenAuthenticator, parse_token_file
from tenant_proxy.auth.tokenreview import TokenReviewAuthenticator
from tenant_proxy.auth.x509 import X509Authenticator
from tenant_proxy.identity import Identity
from tenant_proxy.pki import KeyPair, issue_client_cert

SA_USER = {"username": "system:serviceaccount:team-a-dev:ci-bot", "uid": "u-1", "groups": []}
UpstreamFixture = tuple[Upstream, Callable[[str], Awaitable[dict[str, Any]]]]


@pytest.fixture
async def chain(issuer: Issuer, upstream: UpstreamFixture) -> AsyncIterator[AuthChain]:
    fake, review = upstream
    fake.valid["sa-token"] = SA_USER
    oidc = OIDCAuthenticator(
        [
            OIDCIssuerSettings(
                issuer.url,
                ("tenant-proxy",),
                username_prefix="oidc:",
                ca_file=str(issuer.ca_file),
            )
        ]
    )
    static = StaticTokenAuthenticator(parse_token_file("demo-token,dave,uid-d,demo\n"))
    yield AuthChain([X509Authenticator(), static, oidc, TokenReviewAuthenticator(review)])
    await oidc.close()


async def test_each_credential_reaches_its_method(
    chain: AuthChain, issuer: Issuer, upstream: UpstreamFixture, ca: KeyPair
) -> None:
    cert = x509.load_pem_x509_certificate(issue_client_cert(ca, "alice", ["devs"]).cert_pem)
    by_cert = await chain.authenticate(Credentials(peer_cert=cert))
    by_static = await chain.authenticate(Credentials(bearer_token="demo-token"))
    by_oidc = await chain.authenticate(Credentials(bearer_token=issuer.token()))
    by_review = await chain.authenticate(Credentials(bearer_token="sa-token"))
    assert [(i.user, i.method) for i in (by_cert, by_static, by_oidc, by_review)] == [
        ("alice", "x509"),
        ("dave", "static"),
        ("oidc:alice", "oidc"),
        ("system:serviceaccount:team-a-dev:ci-bot", "tokenreview"),
    ]
    assert upstream[0].calls[TOKENREVIEWS] == 1


async def test_a_jwt_of_another_issuer_goes_to_tokenreview(
    chain: AuthChain, issuer: Issuer, upstream: UpstreamFixture
) -> None:
    foreign = issuer.token({"iss": "https://kubernetes.default.svc"})
    with pytest.raises(AuthenticationError, match="TokenReview"):
        await chain.authenticate(Credentials(bearer_token=foreign))
    assert upstream[0].calls[TOKENREVIEWS] == 1


@pytest.mark.parametrize("token", ["", " ", "\t"])
async def test_empty_tokens_never_reach_any_method(
    chain: AuthChain, upstream: UpstreamFixture, token: str
) -> None:
    with pytest.raises(AuthenticationError, match="empty"):
        await chain.authenticate(Credentials(bearer_token=token))
    assert upstream[0].calls[TOKENREVIEWS] == 0


async def test_invalid_oidc_tokens_are_401_and_never_reviewed(
    chain: AuthChain, issuer: Issuer, upstream: UpstreamFixture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = [
        issuer.token({"exp": 1_000_000}),
        issuer.token({"aud": "someone-else"}),
        issuer.token({"nbf": 4_000_000_000}),
    ]
    for token in bad:
        with pytest.raises(AuthenticationError):
            await chain.authenticate(Credentials(bearer_token=token))
        assert token not in caplog.text
    with pytest.raises(ForbiddenIdentity):
        await chain.authenticate(
            Credentials(bearer_token=issuer.token({"groups": ["system:masters"]}))
        )
    assert upstream[0].calls[TOKENREVIEWS] == 0


async def test_identities_are_never_empty(chain: AuthChain, issuer: Issuer) -> None:
    identity: Identity = await chain.authenticate(Credentials(bearer_token=issuer.token()))
    assert identity.user.strip()
    with pytest.raises(AuthenticationError):
        await chain.authenticate(Credentials(bearer_token=issuer.token({"sub": " "})))
