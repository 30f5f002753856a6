"""What every authentication method shares: the credentials it reads and how it fails.

Exceptions:
    AuthenticationError  -- the credential is of this method's kind but not valid -> 401.
    ForbiddenIdentity    -- the credential is valid but names a forbidden identity
                            (e.g. an OIDC claim yielding `system:masters`) -> 403.
An authenticator returns None when the credential is not its kind, so the chain tries the next.
Neither error's text ever contains a token: it goes to logs and metrics as it is.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509

from tenant_proxy.identity import Identity


@dataclass(frozen=True)
class Credentials:
    """What a request presented, gathered once by the listener."""

    peer_cert: x509.Certificate | None = None
    """The client certificate, verified against the client CA (None if none, or unverifiable)."""
    peer_cert_problem: str | None = None
    """Why a client certificate that was sent does not verify (foreign CA, expired, ...)."""
    bearer_token: str | None = None
    """The bearer token (Authorization or WebSocket subprotocol); "" when one was sent empty."""
    remote_ip: str = ""
    """The TCP peer's address, for front proxies trusted by source CIDR."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Request headers (case-insensitive mapping preferred), for front-proxy identities."""


class AuthenticationError(Exception):
    """A credential of some method's kind that is not valid: answer 401."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        """A short, token-free cause for logs and metrics, e.g. "token expired"."""


class ForbiddenIdentity(Exception):
    """A valid credential naming an identity the proxy refuses to assume: answer 403."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        """A short, token-free cause, safe to show the client."""


class Authenticator(Protocol):
    """One authentication method."""

    async def authenticate(self, creds: Credentials) -> Identity | None:
        """The identity, None when `creds` hold nothing of this kind; raises when invalid."""
        ...


def bearer_token(authorization: str | None) -> str | None:
    """The token of an Authorization header: None without a header.

    Any header that is present but is not a non-empty `Bearer <token>` yields "", which the
    chain refuses: a client that sent credentials must never fall through to anonymous.
    """
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return token.strip()


def token_digest(token: str) -> str:
    """A SHA-256 hex digest: how caches and logs refer to a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def unescape_extra_key(encoded: str) -> str:
    """An `Impersonate-Extra-`/`X-Remote-Extra-` header suffix as the extra key it names.

    As kube-apiserver: lower-cased (header names are case-insensitive), then percent-decoded;
    a suffix that is not valid percent-encoding (or not UTF-8) is kept as it is.
    """
    lowered = encoded.lower()
    if _BAD_ESCAPE.search(lowered):
        return lowered
    try:
        return urllib.parse.unquote(lowered, errors="strict")
    except UnicodeDecodeError:
        return lowered


def header_values(headers: Mapping[str, str] | Iterable[tuple[str, str]], name: str) -> list[str]:
    """Every value of header `name` (any case), in order; repeated headers each count."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    wanted = name.lower()
    return [value for key, value in pairs if key.lower() == wanted]
