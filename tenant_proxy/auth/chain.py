"""The authentication chain: methods tried in order, first identity wins."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tenant_proxy.auth.base import (
    AuthenticationError,
    Authenticator,
    Credentials,
    ForbiddenIdentity,
)
from tenant_proxy.identity import ANONYMOUS, Identity

log = logging.getLogger(__name__)


def _presented_credentials(creds: Credentials) -> bool:
    return creds.bearer_token is not None or creds.peer_cert is not None


class AuthChain:
    """Tries each authenticator in order; the first non-None identity wins.

    An error from a method stops the chain (it is that method's credential, and it is bad);
    an unexpected exception in a method is an AuthenticationError too (fail closed).
    Anonymous access applies only to requests that presented nothing: as kube-apiserver's
    `union.NewFailOnError`, a bad or unrecognised token is 401, never anonymous.
    """

    def __init__(
        self, authenticators: Sequence[Authenticator], allow_anonymous: bool = False
    ) -> None:
        self._authenticators = tuple(authenticators)
        self._allow_anonymous = allow_anonymous

    async def authenticate(self, creds: Credentials) -> Identity:
        """The caller's identity; raises AuthenticationError (401) or ForbiddenIdentity (403)."""
        if creds.bearer_token is not None and not creds.bearer_token.strip():
            # capsule-proxy CVE-2023-48312: an empty token must not pass for anyone.
            raise AuthenticationError("empty bearer token")
        for authenticator in self._authenticators:
            identity = await _attempt(authenticator, creds)
            if identity is not None:
                return identity
        if self._allow_anonymous and not _presented_credentials(creds):
            return ANONYMOUS
        if creds.bearer_token is not None:
            raise AuthenticationError("invalid bearer token")
        raise AuthenticationError("no credentials")


async def _attempt(authenticator: Authenticator, creds: Credentials) -> Identity | None:
    try:
        return await authenticator.authenticate(creds)
    except (AuthenticationError, ForbiddenIdentity):
        raise
    except Exception as err:
        # Fail closed, and log only the type: a message might quote the credential.
        log.error("%s failed: %s", type(authenticator).__name__, type(err).__name__)
        raise AuthenticationError("authenticator failed") from None
