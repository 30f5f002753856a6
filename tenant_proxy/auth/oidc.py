"""OIDC bearer tokens (JWTs), per configured issuer, validated strictly.

Strict means: `exp`, `iss` and `aud` required (PyJWT accepts a token without `exp` unless told);
only RS*/ES*/PS* algorithms, so `none` and every HMAC (including HS256 "signed" with the
issuer's public key) are refused; a `crit` header is refused (we implement no extension);
small leeway. A token that is not a JWT, or whose `iss` is not configured, is not ours (None).
A claim may never yield a `system:` user or group: that is ForbiddenIdentity (403).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt

from tenant_proxy.auth.base import AuthenticationError, Credentials, ForbiddenIdentity
from tenant_proxy.auth.jwks import JWKSCache, SigningKey
from tenant_proxy.identity import Identity

ASYMMETRIC_ALGORITHMS = frozenset(
    f"{family}{bits}" for family in ("RS", "ES", "PS") for bits in ("256", "384", "512")
)
_KEY_TYPE = {"RS": "RSA", "PS": "RSA", "ES": "EC"}
_MAX_TOKEN_BYTES = 64 * 1024
_NO_PREFIX = "-"


@dataclass(frozen=True)
class OIDCIssuerSettings:
    """One trusted OIDC issuer."""

    issuer_url: str
    """Must equal the tokens' `iss` claim and the discovery document's `issuer`."""
    audiences: tuple[str, ...]
    """The token's `aud` must contain at least one of these."""
    username_claim: str = "sub"
    """The claim holding the user name."""
    username_prefix: str | None = None
    """Prepended to the user name. None: "<issuer_url>#" unless the claim is `email` (as
    kube-apiserver); "-": no prefix."""
    groups_claim: str = "groups"
    """The claim holding the groups (a string or a list of strings); absent means none."""
    groups_prefix: str = ""
    """Prepended to every group name."""
    required_claims: Mapping[str, str] = field(default_factory=dict)
    """Claims that must be present with exactly these string values."""
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    """Accepted signature algorithms; anything outside RS*/ES*/PS* is rejected at construction."""
    jwks_file: str | None = None
    """A static JWKS file instead of discovery."""
    ca_file: str | None = None
    """CA bundle for the issuer's HTTPS endpoints (system roots when None)."""
    leeway_seconds: int = 30
    """Clock skew tolerated on exp, nbf and iat."""
    jwks_refresh_interval: float = 300
    """Seconds between background refreshes of the keys."""
    jwks_min_refetch_interval: float = 10
    """At most one fetch per this many seconds, however many unknown `kid`s arrive."""

    def __post_init__(self) -> None:
        if not self.issuer_url:
            raise ValueError("issuer_url is required")
        if not self.audiences or not all(self.audiences):
            raise ValueError(f"issuer {self.issuer_url}: at least one non-empty audience")
        refused = set(self.algorithms) - ASYMMETRIC_ALGORITHMS
        if refused or not self.algorithms:
            raise ValueError(f"issuer {self.issuer_url}: algorithms {sorted(refused)} not allowed")
        if not 0 <= self.leeway_seconds <= 300:
            raise ValueError(f"issuer {self.issuer_url}: leeway_seconds must be within 0..300")

    @property
    def user_prefix(self) -> str:
        """The prefix actually applied to user names."""
        if self.username_prefix == _NO_PREFIX:
            return ""
        if self.username_prefix is not None:
            return self.username_prefix
        return "" if self.username_claim == "email" else f"{self.issuer_url}#"


def _b64_json(segment: str) -> dict[str, Any] | None:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(header, claims) of a compact JWS, unverified; None when `token` is not a JWT."""
    if len(token) > _MAX_TOKEN_BYTES or token.count(".") != 2:
        return None
    header_b64, claims_b64, _ = token.split(".")
    header, claims = _b64_json(header_b64), _b64_json(claims_b64)
    if header is None or claims is None:
        return None
    return header, claims


def check_header(header: Mapping[str, Any], settings: OIDCIssuerSettings) -> str:
    """The token's algorithm, if this issuer accepts it; raises AuthenticationError otherwise."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in settings.algorithms:
        raise AuthenticationError("token algorithm not allowed")
    if "crit" in header:
        raise AuthenticationError("token has critical header extensions")
    return alg


def _string_list(value: object, claim: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise AuthenticationError(f"claim {claim!r} is not a string or list of strings")


def identity_from_claims(claims: Mapping[str, Any], settings: OIDCIssuerSettings) -> Identity:
    """The identity verified claims name, with prefixes; refuses `system:` names (403)."""
    for name, wanted in settings.required_claims.items():
        if claims.get(name) != wanted:
            raise AuthenticationError(f"required claim {name!r} missing or wrong")
    user = claims.get(settings.username_claim)
    if not isinstance(user, str) or not user.strip():
        raise AuthenticationError(f"claim {settings.username_claim!r} missing or empty")
    if settings.username_claim == "email" and claims.get("email_verified", True) is not True:
        raise AuthenticationError("email not verified")
    user = settings.user_prefix + user
    groups = tuple(
        settings.groups_prefix + g
        for g in _string_list(claims.get(settings.groups_claim), settings.groups_claim)
    )
    if user.startswith("system:") or any(g.startswith("system:") for g in groups):
        raise ForbiddenIdentity("an OIDC claim may not name a system: user or group")
    return Identity(user=user, groups=groups, method="oidc")


def _verify(token: str, key: SigningKey, alg: str, settings: OIDCIssuerSettings) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        token,
        key=key.key,
        algorithms=[alg],
        audience=list(settings.audiences),
        issuer=settings.issuer_url,
        leeway=settings.leeway_seconds,
        options={"require": ["exp", "iss", "aud"], "verify_signature": True},
    )
    return claims


_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidAudienceError, "token audience not accepted"),
    (jwt.InvalidIssuerError, "token issuer mismatch"),
    (jwt.MissingRequiredClaimError, "token lacks a required claim"),
    (jwt.InvalidSignatureError, "token signature invalid"),
)


def _reason(err: jwt.PyJWTError) -> str:
    for kind, reason in _REASONS:
        if isinstance(err, kind):
            return reason
    return "invalid token"


class OIDCAuthenticator:
    """Validates JWTs of the configured issuers; each issuer has its own JWKSCache."""

    def __init__(
        self,
        issuers: Sequence[OIDCIssuerSettings],
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._issuers = {s.issuer_url: s for s in issuers}
        self._jwks = {
            s.issuer_url: JWKSCache(
                s.issuer_url,
                jwks_file=s.jwks_file,
                ca_file=s.ca_file,
                refresh_interval=s.jwks_refresh_interval,
                min_refetch_interval=s.jwks_min_refetch_interval,
                session=session,
            )
            for s in issuers
        }

    def jwks(self, issuer_url: str) -> JWKSCache:
        """The key cache of one issuer."""
        return self._jwks[issuer_url]

    async def close(self) -> None:
        """Stop key refreshes and close their sessions."""
        for cache in self._jwks.values():
            await cache.close()

    async def authenticate(self, creds: Credentials) -> Identity | None:
        token = creds.bearer_token
        parts = unverified_parts(token) if token else None
        if token is None or parts is None:
            return None
        header, claims = parts
        issuer = claims.get("iss")
        settings = self._issuers.get(issuer) if isinstance(issuer, str) else None
        if settings is None:
            return None  # another issuer's JWT, e.g. a ServiceAccount token for TokenReview
        alg = check_header(header, settings)
        verified = await self._verified_claims(token, header, alg, settings)
        return identity_from_claims(verified, settings)

    async def _verified_claims(
        self, token: str, header: Mapping[str, Any], alg: str, settings: OIDCIssuerSettings
    ) -> dict[str, Any]:
        kid = header.get("kid")
        keys = await self._jwks[settings.issuer_url].candidates(
            kid if isinstance(kid, str) else None, _KEY_TYPE[alg[:2]]
        )
        if not keys:
            raise AuthenticationError("token signing key unknown")
        error: jwt.PyJWTError | None = None
        for key in keys:
            try:
                return _verify(token, key, alg, settings)
            except jwt.InvalidSignatureError as err:
                error = err  # without a kid several keys may fit: try the next
            except jwt.PyJWTError as err:
                raise AuthenticationError(_reason(err)) from None
        raise AuthenticationError(_reason(error or jwt.InvalidSignatureError()))
