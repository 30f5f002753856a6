"""Client-certificate authentication: user = CN, groups = every O, as kube-apiserver reads them."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
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
        cert = creds.peer_cert
        if cert is None or not self._settings.enabled:
            return None
        check_validity(cert, self._clock())
        check_client_usage(cert)
        user, groups = subject_identity(cert)
        if not user.strip():
            raise AuthenticationError("client certificate has no common name")
        return Identity(user=user, groups=groups, method="x509")


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> x509.Certificate | None:
    """The verified client certificate of a TLS connection (from transport extra info)."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der) if der else None
