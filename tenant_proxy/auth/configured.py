"""Builds the authentication chain and the client-impersonation check from settings.

Order: x509, static tokens, OIDC, then TokenReview last (it accepts any other bearer token,
so it must not shadow the methods that recognise their own tokens).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tenant_proxy.auth.base import Authenticator
from tenant_proxy.auth.chain import AuthChain
from tenant_proxy.auth.delegation import CachedAccessReview, Delegation, sar_spec
from tenant_proxy.auth.front_proxy import FrontProxyAuthenticator
from tenant_proxy.auth.front_proxy import FrontProxySettings as FrontProxy
from tenant_proxy.auth.oidc import OIDCAuthenticator, OIDCIssuerSettings
from tenant_proxy.auth.static_tokens import StaticTokenAuthenticator
from tenant_proxy.auth.tokenreview import TokenReviewAuthenticator, TokenReviewSettings
from tenant_proxy.auth.x509 import X509Authenticator, X509Settings
from tenant_proxy.config import AuthenticationSettings, OIDCSettings
from tenant_proxy.identity import Identity
from tenant_proxy.upstream import Upstream


def oidc_settings(s: OIDCSettings) -> OIDCIssuerSettings:
    return OIDCIssuerSettings(
        issuer_url=s.issuer_url,
        audiences=tuple(s.audiences),
        username_claim=s.username_claim,
        username_prefix=s.username_prefix,
        groups_claim=s.groups_claim,
        groups_prefix=s.groups_prefix,
        required_claims=dict(s.required_claims),
        algorithms=tuple(s.algorithms),
        jwks_file=str(s.jwks_file) if s.jwks_file else None,
        ca_file=str(s.ca_file) if s.ca_file else None,
        leeway_seconds=s.leeway_seconds,
        jwks_refresh_interval=s.jwks_refresh_seconds,
        jwks_min_refetch_interval=s.jwks_min_refetch_seconds,
    )


class Authentication:
    """The chain, the client-impersonation step, and what must be closed (OIDC key caches)."""

    def __init__(self, settings: AuthenticationSettings, upstream: Upstream) -> None:
        methods: list[Authenticator] = []
        front = settings.front_proxy
        if front.enabled:
            # First: the front proxy may present a client certificate of its own.
            methods.append(
                FrontProxyAuthenticator(
                    FrontProxy(
                        trusted_cidrs=tuple(front.trusted_cidrs),
                        source=front.source,
                        allowed_client_names=tuple(front.allowed_client_names),
                    )
                )
            )
        methods.append(X509Authenticator(X509Settings(enabled=settings.x509)))
        if settings.static_tokens_file is not None:
            methods.append(StaticTokenAuthenticator.from_file(settings.static_tokens_file))
        self._oidc: OIDCAuthenticator | None = None
        if settings.oidc:
            self._oidc = OIDCAuthenticator([oidc_settings(s) for s in settings.oidc])
            methods.append(self._oidc)
        if settings.token_review.enabled:
            audiences = tuple(settings.token_review.audiences)

            async def review(token: str) -> Mapping[str, Any]:
                return await upstream.review_token(token, audiences)

            methods.append(
                TokenReviewAuthenticator(review, TokenReviewSettings(audiences=audiences))
            )
        self.chain = AuthChain(methods, allow_anonymous=settings.anonymous)

        async def access_review(identity: Identity, attrs: Mapping[str, str]) -> bool:
            return await upstream.access_review(sar_spec(identity, attrs))

        # `kubectl --as`: honoured only where SubjectAccessReviews say the caller may.
        self.delegate = Delegation(CachedAccessReview(access_review))

    async def close(self) -> None:
        if self._oidc is not None:
            await self._oidc.close()
