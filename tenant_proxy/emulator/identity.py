"""Who is calling: client certificates, bearer tokens, and the ServiceAccount token issuer.

Mirrors kube-apiserver's authenticator union: x509 first, then the bearer token (a static
token table, then ServiceAccount JWTs this emulator signed). `None` means "no credentials"
(the pipeline then uses system:anonymous); a credential that is present but bad raises 401.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tenant_proxy import pki_verify
from tenant_proxy.emulator import errors
from tenant_proxy.emulator.types import UserInfo
from tenant_proxy.pki import subject_identity

AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
SA_PREFIX = "system:serviceaccount:"
SA_GROUP = "system:serviceaccounts"
DEFAULT_ISSUER = "https://kubernetes.default.svc"
INVALID_TOKEN = "invalid bearer token"  # noqa: S105 - an error message, not a secret
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
# Headers the real server sends with /openid/v1/jwks and /.well-known/openid-configuration.
JWKS_CONTENT_TYPE = "application/jwk-set+json"
OPENID_CACHE_CONTROL = "public, max-age=3600"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def split_service_account(username: str) -> tuple[str, str] | None:
    """(namespace, name) of `system:serviceaccount:<ns>:<name>`, as serviceaccount.SplitUsername."""
    if not username.startswith(SA_PREFIX):
        return None
    parts = username[len(SA_PREFIX) :].split(":")
    if len(parts) != 2:
        return None
    namespace, name = parts
    if not (len(namespace) <= 63 and _DNS_LABEL.match(namespace)):
        return None
    if not (len(name) <= 253 and _DNS_SUBDOMAIN.match(name)):
        return None
    return namespace, name


def service_account_groups(namespace: str) -> tuple[str, str]:
    return (SA_GROUP, f"{SA_GROUP}:{namespace}")


def with_authenticated(user: UserInfo) -> UserInfo:
    """The user with `system:authenticated` appended, as the server's group adder does."""
    if AUTHENTICATED in user.groups:
        return user
    return UserInfo(user.name, user.uid, (*user.groups, AUTHENTICATED), user.extra)


@dataclass(frozen=True)
class BoundObject:
    """What a bound ServiceAccount token is tied to (a Pod or a Secret)."""

    kind: str
    name: str
    uid: str


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _key_id(public_key: rsa.RSAPublicKey) -> str:
    # kube-apiserver's keyIDFromPublicKey: unpadded base64url of SHA-256 over the PKIX DER.
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")


class TokenIssuer:
    """Signs and verifies ServiceAccount JWTs (RS256), and publishes its key as JWKS."""

    def __init__(
        self,
        issuer_url: str = DEFAULT_ISSUER,
        api_audiences: Sequence[str] | None = None,
        key: rsa.RSAPrivateKey | None = None,
    ) -> None:
        self.issuer_url = issuer_url
        self.api_audiences: tuple[str, ...] = tuple(api_audiences or (issuer_url,))
        self._key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = _key_id(self._key.public_key())

    def issue(
        self,
        namespace: str,
        name: str,
        uid: str,
        audiences: Sequence[str],
        expiration_seconds: int,
        bound_object: BoundObject | None = None,
        now: dt.datetime | None = None,
    ) -> tuple[str, dt.datetime]:
        """A signed token for ServiceAccount `namespace/name` and its expiry time."""
        issued = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
        expiry = issued + dt.timedelta(seconds=expiration_seconds)
        k8s: dict[str, Any] = {"namespace": namespace}
        if bound_object is not None:
            k8s[bound_object.kind.lower()] = {"name": bound_object.name, "uid": bound_object.uid}
        k8s["serviceaccount"] = {"name": name, "uid": uid}
        claims = {
            "aud": list(audiences),
            "exp": int(expiry.timestamp()),
            "iat": int(issued.timestamp()),
            "iss": self.issuer_url,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": k8s,
            "nbf": int(issued.timestamp()),
            "sub": f"{SA_PREFIX}{namespace}:{name}",
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.key_id})
        return token, expiry

    def verify(self, token: str, audiences: Sequence[str]) -> dict[str, Any] | None:
        """The claims of a token this issuer signed for one of `audiences`, else None."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                audience=list(audiences),
                issuer=self.issuer_url,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError:
            return None
        return claims if _service_account_claims(claims) is not None else None

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()
        key = {
            "use": "sig",
            "kty": "RSA",
            "kid": self.key_id,
            "alg": "RS256",
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
        }
        return {"keys": [key]}

    def openid_configuration(self, server_url: str | None = None) -> dict[str, Any]:
        """The discovery document; `server_url` is where /openid/v1/jwks is served."""
        base = (server_url or self.issuer_url).rstrip("/")
        return {
            "issuer": self.issuer_url,
            "jwks_uri": f"{base}/openid/v1/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }


@dataclass(frozen=True)
class _SAClaims:
    namespace: str
    name: str
    uid: str
    pod: tuple[str, str] | None


def _service_account_claims(claims: Mapping[str, Any]) -> _SAClaims | None:
    k8s = claims.get("kubernetes.io")
    if not isinstance(k8s, dict):
        return None
    sa = k8s.get("serviceaccount") or {}
    namespace, name = k8s.get("namespace"), sa.get("name")
    if not isinstance(namespace, str) or not isinstance(name, str):
        return None
    if claims.get("sub") != f"{SA_PREFIX}{namespace}:{name}":
        return None
    pod = k8s.get("pod")
    bound_pod = (
        (str(pod.get("name", "")), str(pod.get("uid", ""))) if isinstance(pod, dict) else None
    )
    return _SAClaims(namespace, name, str(sa.get("uid", "")), bound_pod)


def service_account_user(claims: Mapping[str, Any]) -> UserInfo | None:
    """The user a verified ServiceAccount token stands for (without system:authenticated)."""
    sa = _service_account_claims(claims)
    if sa is None:
        return None
    extra: dict[str, tuple[str, ...]] = {}
    if sa.pod is not None:
        extra = {POD_NAME_EXTRA: (sa.pod[0],), POD_UID_EXTRA: (sa.pod[1],)}
    return UserInfo(
        name=f"{SA_PREFIX}{sa.namespace}:{sa.name}",
        uid=sa.uid,
        groups=service_account_groups(sa.namespace),
        extra=extra,
    )


@dataclass(frozen=True)
class TokenOutcome:
    """What authenticating one bearer token gave: a user and the audiences it is good for,
    or an error message (as TokenReview's `status.error` shows it)."""

    user: UserInfo | None
    audiences: tuple[str, ...] = ()
    error: str = ""


def _intersect(ours: Iterable[str], theirs: Iterable[str]) -> tuple[str, ...]:
    wanted = set(theirs)
    return tuple(a for a in ours if a in wanted)


@dataclass
class Authenticator:
    """kube-apiserver's request authenticator, reduced to what the emulator serves."""

    ca_pem: bytes
    static_tokens: dict[str, UserInfo]
    issuer: TokenIssuer
    sa_exists: Callable[[str, str], bool]
    _trust: pki_verify.ClientTrust = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._trust = pki_verify.load_trust(self.ca_pem)

    def authenticate(self, request: web.Request) -> UserInfo | None:
        """The caller, None without credentials; raises 401 for a bad certificate or token."""
        cert_user, cert_error = self._certificate_user(request)
        if cert_user is not None:
            return with_authenticated(cert_user)
        token = bearer_token(request.headers.get("Authorization", ""))
        if token is None:
            token = websocket_bearer_token(request.headers.getall("Sec-WebSocket-Protocol", []))
        if token is None:
            if cert_error:
                raise errors.unauthorized()
            return None
        outcome = self.authenticate_token(token)
        if outcome.user is None:
            raise errors.unauthorized()
        return outcome.user

    def authenticate_token(
        self, token: str, audiences: Sequence[str] | None = None
    ) -> TokenOutcome:
        """Static table, then ServiceAccount JWTs; `audiences` default to the API's own."""
        wanted = tuple(audiences or self.issuer.api_audiences)
        static = self.static_tokens.get(token)
        if static is not None:
            # Static tokens are audience-agnostic: good only for the API's own audiences.
            auds = _intersect(self.issuer.api_audiences, wanted)
            if auds:
                return TokenOutcome(with_authenticated(static), auds)
            return TokenOutcome(None, error=INVALID_TOKEN)
        claims = self.issuer.verify(token, wanted)
        user = service_account_user(claims) if claims is not None else None
        if claims is None or user is None:
            return TokenOutcome(None, error=INVALID_TOKEN)
        namespace, name = split_service_account(user.name) or ("", "")
        if not self.sa_exists(namespace, name):
            return TokenOutcome(None, error=INVALID_TOKEN)
        token_auds = claims.get("aud")
        token_auds = [token_auds] if isinstance(token_auds, str) else list(token_auds or ())
        return TokenOutcome(with_authenticated(user), _intersect(wanted, token_auds))

    def _certificate_user(self, request: web.Request) -> tuple[UserInfo | None, bool]:
        """(user, False) for a good certificate, (None, True) for a bad one, (None, False)
        when there is none."""
        transport = request.transport
        chain = pki_verify.peer_chain_der(
            transport.get_extra_info("ssl_object") if transport is not None else None
        )
        if not chain:
            return None, False
        try:
            cert = pki_verify.verify_client_certificate(self._trust, chain)
        except pki_verify.ClientCertificateError:
            return None, True
        user, groups = subject_identity(cert)
        if not user:
            return None, True
        return UserInfo(name=user, groups=groups), False


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer` header, as the real bearer-token reader splits it."""
    parts = authorization.strip().split(" ", 2)
    if len(parts) < 2 or parts[0].lower() != "bearer" or not parts[1]:
        return None
    return parts[1]


WEBSOCKET_BEARER_PREFIX = "base64url.bearer.authorization.k8s.io."


def websocket_bearer_token(protocol_headers: Sequence[str]) -> str | None:
    """A token sent as a WebSocket subprotocol, as browsers must (the real server's websocket
    protocol authenticator); None when there is none or it does not decode."""
    for header in protocol_headers:
        for protocol in (p.strip() for p in header.split(",")):
            if not protocol.startswith(WEBSOCKET_BEARER_PREFIX):
                continue
            encoded = protocol[len(WEBSOCKET_BEARER_PREFIX) :]
            try:
                raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
                return raw.decode() or None
            except (ValueError, UnicodeDecodeError):
                return None
    return None
