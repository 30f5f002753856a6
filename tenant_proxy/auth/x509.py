"""Client-certificate authentication: user = CN, groups = every O, as kube-apiserver reads them.

As kube-apiserver (k8s.io/apiserver secure serving: `tls.RequestClientCert`), the listener asks
for a certificate and accepts any at the handshake; it is verified here, per request, against the
client CA bundle (`certificate_problem`), so that a foreign, expired or not-yet-valid one is a
401 Status with a reason, not a reset connection ("EOF" in kubectl).

Beside a bearer token, an unverifiable certificate does not decide: kube-apiserver's request
authenticator is `union.New(x509, bearer token, ...)`, which keeps an authenticator's error and
tries the next (only `union.NewFailOnError`, used to put anonymous last, stops at an error); the
x509 authenticator's `Verify` failure is such an error. So a valid token next to a foreign
certificate authenticates as the token's user; an invalid one is 401 either way; a foreign
certificate alone is 401, never anonymous (k8s.io/apiserver/pkg/authentication/request/x509 and
union, pkg/kubeapiserver/authenticator/config.go).
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from tenant_proxy.auth.base import AuthenticationError, Credentials
from tenant_proxy.identity import Identity
from tenant_proxy.pki import subject_identity


@dataclass(frozen=True)
class X509Settings:
    """Client-certificate authentication settings (the CA bundle belongs to the listener)."""

    enabled: bool = True
    """Accept client certificates as credentials."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def check_validity(cert: x509.Certificate, now: dt.datetime) -> None:
    """Raise AuthenticationError unless `now` lies within the certificate's validity."""
    # The TLS layer already checked this; checking again costs nothing and survives a
    # misconfigured SSLContext (e.g. one that verifies the chain but not the dates).
    if now < cert.not_valid_before_utc:
        raise AuthenticationError("client certificate not yet valid")
    if now > cert.not_valid_after_utc:
        raise AuthenticationError("client certificate expired")


def check_client_usage(cert: x509.Certificate) -> None:
    """Raise AuthenticationError if an ExtendedKeyUsage excludes client authentication.

    As Go's x509 verification with ExtKeyUsageClientAuth (kube-apiserver): no extension means
    any usage; otherwise clientAuth or anyExtendedKeyUsage must be listed.
    """
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    allowed = {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
    if not allowed & set(usages):
        raise AuthenticationError("certificate not issued for client authentication")


UNKNOWN_AUTHORITY = "client certificate signed by unknown authority"


def certificate_problem(
    cert: x509.Certificate, roots: tuple[x509.Certificate, ...], now: dt.datetime
) -> str | None:
    """Why kube-apiserver's x509 authenticator would refuse `cert`, or None if it accepts it.

    As Go's `Certificate.Verify` with the client CA pool as roots: the leaf's dates first, then a
    certificate of the bundle that issued it (any certificate in the bundle is an anchor, and the
    leaf itself may be one), that anchor's dates, then the leaf's extended key usage. Only the
    leaf is known (Python's ssl gives no peer chain before 3.13): intermediates belong in the
    bundle.
    """
    try:
        check_validity(cert, now)
        issuer = trusted_issuer(cert, roots)
        if issuer is None:
            return UNKNOWN_AUTHORITY
        if now < issuer.not_valid_before_utc or now > issuer.not_valid_after_utc:
            return "client CA certificate expired or not yet valid"
        check_client_usage(cert)
    except AuthenticationError as exc:
        return exc.reason
    return None


def trusted_issuer(
    cert: x509.Certificate, roots: tuple[x509.Certificate, ...]
) -> x509.Certificate | None:
    """The certificate of `roots` that signed `cert` (or `cert` itself if it is one)."""
    found = _issuer_index(cert.public_bytes(serialization.Encoding.DER), roots)
    return None if found is None else roots[found]


@lru_cache(maxsize=4096)
def _issuer_index(der: bytes, roots: tuple[x509.Certificate, ...]) -> int | None:
    # Cached: a signature check per request would cost more than the rest of authentication.
    # Keyed by the bundle itself, so a reloaded bundle is checked afresh.
    cert = x509.load_der_x509_certificate(der)
    for i, root in enumerate(roots):
        if root == cert:
            return i
        if root.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return i
    return None


class X509Authenticator:
    """Reads the identity from a client certificate the TLS layer has verified."""

    def __init__(
        self,
        settings: X509Settings | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self._settings = settings or X509Settings()
        self._clock = clock

    async def authenticate(self, creds: Credentials) -> Identity | None:
        if not self._settings.enabled:
            return None
        if creds.peer_cert_problem is not None:
            if creds.bearer_token is not None:
                return None  # kube-apiserver's union: the token is tried next and decides
            raise AuthenticationError(creds.peer_cert_problem)
        cert = creds.peer_cert
        if cert is None:
            return None
        check_validity(cert, self._clock())
        check_client_usage(cert)
        user, groups = subject_identity(cert)
        if not user.strip():
            raise AuthenticationError("client certificate has no common name")
        return Identity(user=user, groups=groups, method="x509")


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> x509.Certificate | None:
    """The client certificate a TLS connection presented, verified or not (see tls.py)."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der) if der else None
