"""Client certificates checked by the application, as kube-apiserver checks them.

kube-apiserver asks every TLS client for a certificate but does not require one, accepts
whatever the client sends, and verifies it in its x509 authenticator: a certificate from a CA
it does not trust completes the handshake and the request is answered 401 (transcript
`authn-401-foreign-cert`). Python's `ssl` cannot do that by itself: with `CERT_OPTIONAL`
OpenSSL verifies a presented certificate during the handshake and aborts it on failure, and
`ssl.SSLContext` has no verify callback (pyOpenSSL has one, but asyncio's TLS transport only
takes the standard library's contexts). So `request_any_client_certificate` installs an
accept-all verify callback on the context's own `SSL_CTX` through the OpenSSL library the
`ssl` module is linked with, and `verify_client_certificate` does the verification afterwards
with `cryptography.x509.verification`, under the rules of Go's `x509.Verify` with
`ExtKeyUsageClientAuth` that kube-apiserver uses.

A leaf module (standard library and `cryptography` only): the proxy's listener and the
emulator both use it.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import functools
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

_SSL_VERIFY_PEER = 0x01
_SSL_VERIFY_FAIL_IF_NO_PEER_CERT = 0x02
# What OpenSSL holds for each mode the `ssl` module sets (its own numbering differs).
_OPENSSL_MODES = {
    ssl.CERT_REQUIRED: _SSL_VERIFY_PEER | _SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
    ssl.CERT_OPTIONAL: _SSL_VERIFY_PEER,
}
_VerifyCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


class ClientCertificateError(ValueError):
    """A client certificate that does not verify against the trusted CAs; the message says why."""


def _accept_any(_preverify_ok: int, _store_ctx: int | None) -> int:
    return 1


# Module-level so that it outlives every context it is installed on.
_ACCEPT_ANY = _VerifyCallback(_accept_any)


@functools.cache
def _libssl() -> ctypes.CDLL:
    """The OpenSSL the `ssl` module runs on: its symbols resolve through `_ssl`'s own links
    (or the interpreter's, when `_ssl` is built in)."""
    lib = ctypes.CDLL(getattr(ssl._ssl, "__file__", None))  # type: ignore[attr-defined]
    lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VerifyCallback]
    lib.SSL_CTX_set_verify.restype = None
    lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
    return lib


def _ssl_ctx_pointer(ctx: ssl.SSLContext) -> int:
    """The `SSL_CTX *` of `ctx`: CPython's context object holds it right after its header.

    Checked before use: the pointer must report two verify modes set through `ctx`, so a
    Python whose layout differs raises here instead of configuring some other memory.
    """
    pointer = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not pointer:
        raise RuntimeError("cannot reach the OpenSSL context of this ssl.SSLContext")
    lib = _libssl()
    for mode, openssl_mode in _OPENSSL_MODES.items():
        ctx.verify_mode = mode
        if lib.SSL_CTX_get_verify_mode(pointer) != openssl_mode:
            raise RuntimeError("cannot reach the OpenSSL context of this ssl.SSLContext")
    return pointer


def request_any_client_certificate(ctx: ssl.SSLContext) -> None:
    """Make a server context ask for a client certificate, and accept any one or none.

    The handshake no longer judges the certificate: whoever reads it must call
    `verify_client_certificate`. Setting `ctx.verify_mode` afterwards keeps the callback (the
    `ssl` module preserves the current one). The context a listener was created with is the
    one that counts: a connection keeps its verify mode and callback when an SNI callback
    switches in another context (tried: prepared or not, the switched-in one changes nothing).
    Call it before the context serves: it sets the verify mode twice on the way.
    """
    pointer = _ssl_ctx_pointer(ctx)  # leaves verify_mode at CERT_OPTIONAL
    _libssl().SSL_CTX_set_verify(pointer, _SSL_VERIFY_PEER, _ACCEPT_ANY)


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A TLS server context for a certificate and key that requests any client certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_file, key_file)
    request_any_client_certificate(ctx)
    return ctx


def peer_chain_der(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> tuple[bytes, ...]:
    """The certificates the client sent, leaf first; empty without one.

    Before Python 3.13 the `ssl` module exposes the leaf only, so a client relying on sending
    intermediates verifies only if the trusted bundle holds them.
    """
    if ssl_object is None:
        return ()
    unverified: Any = getattr(ssl_object, "get_unverified_chain", None)
    if unverified is not None:  # Python 3.13+: DER bytes, leaf first
        return tuple(bytes(der) for der in unverified() or ())
    der = ssl_object.getpeercert(binary_form=True)
    return (bytes(der),) if der else ()


@dataclass(frozen=True)
class ClientTrust:
    """The CAs whose client certificates are believed (a client-CA bundle, parsed once)."""

    store: Store
    count: int


def load_trust(ca_bundle_pem: bytes) -> ClientTrust:
    """Parse a PEM bundle of one or more CA certificates; ValueError when it holds none."""
    try:
        certs = x509.load_pem_x509_certificates(ca_bundle_pem)
    except ValueError:
        certs = []
    if not certs:
        raise ValueError("no PEM certificate in the CA bundle")
    return ClientTrust(Store(certs), len(certs))


def _client_usage(
    _policy: object, _cert: x509.Certificate, usage: x509.ExtendedKeyUsage | None
) -> None:
    # Go's rule: no ExtendedKeyUsage means any usage; otherwise clientAuth or any must be listed.
    if usage is None:
        return
    if not {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & set(
        usage
    ):
        raise ValueError("certificate not issued for client authentication")


def _leaf_policy() -> ExtensionPolicy:
    # The Web PKI defaults, relaxed where Go's verifier (and so every Kubernetes client
    # certificate, kubeadm's included) does without: client certificates carry no
    # subjectAltName, and Go requires no authorityKeyIdentifier.
    return (
        ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
        .may_be_present(x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _client_usage)
    )


def verify_client_certificate(
    trust: ClientTrust,
    chain_der: Sequence[bytes],
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """The leaf of `chain_der` (leaf first, then any intermediates the client sent) once it
    chains to a trusted CA, is valid at `now` and may authenticate a client; otherwise
    ClientCertificateError."""
    if not chain_der:
        raise ClientCertificateError("no client certificate")
    try:
        leaf, *intermediates = (x509.load_der_x509_certificate(der) for der in chain_der)
    except ValueError as exc:
        raise ClientCertificateError(f"unreadable client certificate: {exc}") from None
    verifier = (
        PolicyBuilder()
        .store(trust.store)
        .time(now or dt.datetime.now(dt.UTC))
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_leaf_policy()
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        raise ClientCertificateError(str(exc)) from None
    return leaf
