"""Client-certificate authentication: user = CN, groups = every O, as kube-apiserver reads them.

As kube-apiserver (k8s.io/apiserver secure serving: `tls.RequestClientCert`), the listener asks
for a certificate and accepts any at the handshake; it is verified here, per request, against the
client CA bundle (`tenant_proxy.tls.client_certificate`, with `cryptography`'s verifier under
Go's rules: `tenant_proxy.pki_verify`), so that a foreign, expired or not-yet-valid one is a 401
Status with a reason, not a reset connection ("EOF" in kubectl).

Beside a bearer token, an unverifiable certificate does not decide: kube-apiserver's request
authenticator is `union.New(x509, bearer token, ...)`, which keeps an authenticator's error and
tries the next (only `union.NewFailOnError`, used to put anonymous last, stops at an error); the
x509 authenticator's `Verify` failure is such an error. So a valid token next to a foreign
certificate authenticates as the token's user; an invalid one is 401 either way; a foreign
certificate alone is 401, never anonymous (k8s.io/apiserver/pkg/authentication/request/x509 and
union, pkg/kubeapiserver/authenticator/config.go).
"""

from __future__ import annotations

from dataclasses import dataclass

from tenant_proxy.auth.base import AuthenticationError, Credentials
from tenant_proxy.identity import Identity
from tenant_proxy.pki import subject_identity


@dataclass(frozen=True)
class X509Settings:
    """Client-certificate authentication settings (the CA bundle belongs to the listener)."""

    enabled: bool = True
    """Accept client certificates as credentials."""


class X509Authenticator:
    """Reads the identity from a client certificate the listener has verified for this request
    (`Credentials.peer_cert`), or refuses with the reason it was not (`peer_cert_problem`)."""

    def __init__(self, settings: X509Settings | None = None) -> None:
        self._settings = settings or X509Settings()

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
        user, groups = subject_identity(cert)
        if not user.strip():
            raise AuthenticationError("client certificate has no common name")
        return Identity(user=user, groups=groups, method="x509")
