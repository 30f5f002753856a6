from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from auth_fakes import Issuer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.auth.base import AuthenticationError, Credentials, ForbiddenIdentity
from tenant_proxy.auth.oidc import (
    OIDCAuthenticator,
    OIDCIssuerSettings,
    identity_from_claims,
    unverified_parts,
)
from tenant_proxy.identity import Identity

Factory = Callable[..., OIDCAuthenticator]


def _settings(issuer: Issuer, **overrides: Any) -> OIDCIssuerSettings:
    fields: dict[str, Any] = {
        "issuer_url": issuer.url,
        "audiences": ("tenant-proxy",),
        "username_prefix": "oidc:",
        "groups_prefix": "",
        "ca_file": str(issuer.ca_file),
    }
    fields.update(overrides)
    return OIDCIssuerSettings(**fields)


@pytest.fixture
async def make(issuer: Issuer) -> AsyncIterator[Factory]:
    made: list[OIDCAuthenticator] = []

    def factory(**overrides: Any) -> OIDCAuthenticator:
        made.append(OIDCAuthenticator([_settings(issuer, **overrides)]))
        return made[-1]

    yield factory
    for authenticator in made:
        await authenticator.close()


async def _auth(authenticator: OIDCAuthenticator, token: str) -> Identity | None:
    return await authenticator.authenticate(Credentials(bearer_token=token))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _compact(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    return head + "." + _b64(signature)


def _claims_of(token: str) -> dict[str, Any]:
    parts = unverified_parts(token)
    assert parts is not None
    return parts[1]


async def test_valid_rs256_token_yields_prefixed_identity(issuer: Issuer, make: Factory) -> None:
    identity = await _auth(make(), issuer.token())
    assert identity == Identity(user="oidc:alice", groups=("tenant-a-devs",), method="oidc")
    assert issuer.requests["/.well-known/openid-configuration"] == 1
    assert issuer.requests["/keys"] == 1


async def test_valid_es256_token_is_accepted(issuer: Issuer, make: Factory) -> None:
    identity = await _auth(make(), issuer.token(kid="ec-1"))
    assert identity is not None
    assert identity.user == "oidc:alice"


async def test_keys_are_cached_across_tokens(issuer: Issuer, make: Factory) -> None:
    authenticator = make()
    for subject in ("alice", "bob", "carol"):
        identity = await _auth(authenticator, issuer.token({"sub": subject}))
        assert identity is not None
    assert issuer.requests["/keys"] == 1


async def test_default_username_prefix_is_issuer_hash(issuer: Issuer, make: Factory) -> None:
    identity = await _auth(make(username_prefix=None), issuer.token())
    assert identity is not None
    assert identity.user == f"{issuer.url}#alice"


async def test_email_claim_has_no_default_prefix_and_must_be_verified(
    issuer: Issuer, make: Factory
) -> None:
    authenticator = make(username_prefix=None, username_claim="email")
    good = issuer.token({"email": "alice@example.com", "email_verified": True})
    identity = await _auth(authenticator, good)
    assert identity is not None
    assert identity.user == "alice@example.com"
    unverified = issuer.token({"email": "alice@example.com", "email_verified": False})
    with pytest.raises(AuthenticationError, match="email not verified"):
        await _auth(authenticator, unverified)


async def test_groups_prefix_and_string_groups_claim(issuer: Issuer, make: Factory) -> None:
    identity = await _auth(make(groups_prefix="oidc:"), issuer.token({"groups": "devs"}))
    assert identity is not None
    assert identity.groups == ("oidc:devs",)


@pytest.mark.parametrize(
    ("claims", "overrides"),
    [
        ({"groups": ["tenant-a-devs", "system:masters"]}, {}),
        ({"sub": "system:admin"}, {"username_prefix": "-"}),
    ],
)
async def test_system_names_from_claims_are_forbidden(
    issuer: Issuer, make: Factory, claims: dict[str, Any], overrides: dict[str, Any]
) -> None:
    with pytest.raises(ForbiddenIdentity):
        await _auth(make(**overrides), issuer.token(claims))


async def test_prefixes_make_system_groups_harmless(issuer: Issuer, make: Factory) -> None:
    token = issuer.token({"groups": ["system:masters"]})
    identity = await _auth(make(groups_prefix="oidc:"), token)
    assert identity is not None
    assert identity.groups == ("oidc:system:masters",)


async def test_required_claims_must_match(issuer: Issuer, make: Factory) -> None:
    authenticator = make(required_claims={"hd": "example.com"})
    assert await _auth(authenticator, issuer.token({"hd": "example.com"})) is not None
    with pytest.raises(AuthenticationError, match="required claim"):
        await _auth(authenticator, issuer.token({"hd": "evil.com"}))


@pytest.mark.parametrize(
    ("claims", "drop", "reason"),
    [
        ({"exp": 1_000_000}, (), "token expired"),
        ({"nbf": 4_000_000_000}, (), "token not yet valid"),
        ({"aud": "someone-else"}, (), "audience"),
        ({}, ("exp",), "required claim"),
        ({}, ("aud",), "required claim"),
        ({"sub": ""}, (), "missing or empty"),
        ({"sub": 42}, (), "invalid token"),
        ({"groups": [1, 2]}, (), "not a string"),
    ],
)
async def test_invalid_claims_are_refused(
    issuer: Issuer, make: Factory, claims: dict[str, Any], drop: tuple[str, ...], reason: str
) -> None:
    with pytest.raises(AuthenticationError, match=reason):
        await _auth(make(), issuer.token(claims, drop=drop))


async def test_expiry_within_small_leeway_is_accepted(issuer: Issuer, make: Factory) -> None:
    exp = _claims_of(issuer.token())["iat"] - 5
    assert await _auth(make(leeway_seconds=30), issuer.token({"exp": exp})) is not None
    with pytest.raises(AuthenticationError, match="expired"):
        await _auth(make(leeway_seconds=0), issuer.token({"exp": exp}))


async def test_alg_none_is_refused(issuer: Issuer, make: Factory) -> None:
    claims = _claims_of(issuer.token())
    token = _compact({"alg": "none", "typ": "JWT", "kid": "rsa-1"}, claims)
    with pytest.raises(AuthenticationError, match="algorithm"):
        await _auth(make(), token)


async def test_hs256_signed_with_the_public_key_is_refused(
    issuer: Issuer, make: Factory, rsa_key: rsa.RSAPrivateKey
) -> None:
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    unsigned = _compact({"alg": "HS256", "kid": "rsa-1"}, _claims_of(issuer.token()))
    head = unsigned.rsplit(".", 1)[0]
    signature = hmac.new(public_pem, head.encode(), hashlib.sha256).digest()
    with pytest.raises(AuthenticationError, match="algorithm"):
        await _auth(make(), head + "." + _b64(signature))


async def test_allowed_algorithm_not_configured_is_refused(issuer: Issuer, make: Factory) -> None:
    token = issuer.token(alg="RS512")
    with pytest.raises(AuthenticationError, match="algorithm"):
        await _auth(make(), token)
    assert await _auth(make(algorithms=("RS512",)), token) is not None


async def test_crit_header_is_refused(issuer: Issuer, make: Factory) -> None:
    token = issuer.token(headers={"crit": ["exp"]})
    with pytest.raises(AuthenticationError, match="critical"):
        await _auth(make(), token)


async def test_token_signed_by_a_stranger_with_a_known_kid_is_refused(
    issuer: Issuer, make: Factory
) -> None:
    issuer.add_key("rsa-1-forged", rsa.generate_private_key(65537, 2048), publish=False)
    forged = issuer.token(kid="rsa-1-forged").split(".")
    genuine = issuer.token().split(".")
    token = ".".join([genuine[0], forged[1], forged[2]])
    with pytest.raises(AuthenticationError, match="signature"):
        await _auth(make(), token)


async def test_unknown_kid_is_refused(issuer: Issuer, make: Factory) -> None:
    issuer.add_key("hidden", ec.generate_private_key(ec.SECP256R1()), publish=False)
    with pytest.raises(AuthenticationError, match="signing key unknown"):
        await _auth(make(), issuer.token(kid="hidden"))


async def test_other_issuers_and_non_jwts_are_not_ours(issuer: Issuer, make: Factory) -> None:
    authenticator = make()
    assert await _auth(authenticator, issuer.token({"iss": "https://elsewhere"})) is None
    listed = _compact({"alg": "RS256"}, {**_claims_of(issuer.token()), "iss": [issuer.url]})
    assert await _auth(authenticator, listed) is None
    assert await _auth(authenticator, issuer.token(drop=("iss",))) is None
    assert await _auth(authenticator, "garbage") is None
    assert await _auth(authenticator, "a.b.c") is None
    assert await authenticator.authenticate(Credentials()) is None
    assert issuer.requests["/keys"] == 0


@given(st.text(max_size=200))
def test_unverified_parts_never_raises(token: str) -> None:
    parts = unverified_parts(token)
    assert parts is None or all(isinstance(p, dict) for p in parts)


def test_settings_refuse_symmetric_and_none_algorithms() -> None:
    for algorithms in (("HS256",), ("none",), ("RS256", "HS512"), ()):
        with pytest.raises(ValueError, match="algorithms"):
            OIDCIssuerSettings("https://i", ("aud",), algorithms=algorithms)


def test_settings_require_an_audience() -> None:
    with pytest.raises(ValueError, match="audience"):
        OIDCIssuerSettings("https://i", ())


@given(
    st.lists(st.text(min_size=1), max_size=5),
    st.text(max_size=8),
)
def test_no_claim_yields_a_system_group_unprefixed(groups: list[str], prefix: str) -> None:
    settings = OIDCIssuerSettings("https://i", ("a",), groups_prefix=prefix)
    claims = {"sub": "alice", "groups": groups}
    try:
        identity = identity_from_claims(claims, settings)
    except ForbiddenIdentity:
        assert any((prefix + g).startswith("system:") for g in groups)
    else:
        assert not any(g.startswith("system:") for g in identity.groups)
        assert identity.groups == tuple(dict.fromkeys(prefix + g for g in groups))


def test_deeply_nested_json_is_not_a_jwt() -> None:
    nested = base64.urlsafe_b64encode(b"[" * 20_000).rstrip(b"=").decode()
    assert unverified_parts(f"{nested}.{nested}.sig") is None
