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
`ExtKeyUsageClientAuth` that kube-apiserver uses (tests/test_client_cert_verdicts.py holds it
to an oracle written from Go's crypto/x509). Where the library cannot follow Go: it refuses
signatures by Ed25519 or RSA keys under 2048 bits (Go takes both; kubeadm makes neither), and
judges time to the second (a certificate is taken up to a second past its notAfter).

A leaf module (standard library and `cryptography` only): the proxy's listener and the
emulator both use it.
"""

from __future__ import annotations

import bisect
import ctypes
import datetime as dt
import functools
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
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
_E = TypeVar("_E", bound=x509.ExtensionType)
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


# Why a certificate is refused: short, stable and secret-free, they label the
# authentication-failure metric and go to the request log and audit.
NO_CERTIFICATE = "no client certificate"
UNREADABLE = "unreadable client certificate"
EXPIRED = "client certificate expired"
NOT_YET_VALID = "client certificate not yet valid"
UNKNOWN_AUTHORITY = "client certificate signed by unknown authority"
CA_OUTSIDE_VALIDITY = "client CA certificate expired or not yet valid"
NOT_FOR_CLIENTS = "certificate not issued for client authentication"
INVALID = "client certificate invalid"

_ONE_SECOND = dt.timedelta(seconds=1)
_VERDICTS_KEPT = 4096


@dataclass(frozen=True)
class _Verdict:
    """The library's answer for one chain, and the span of time over which it holds: it can
    only change when some certificate involved starts or stops being valid."""

    leaf: x509.Certificate | None
    reason: str | None
    start: dt.datetime
    end: dt.datetime  # exclusive


@dataclass(frozen=True, eq=False)
class ClientTrust:
    """The CAs whose client certificates are believed (a client-CA bundle, parsed once), and
    the verdicts reached against them."""

    store: Store
    certificates: tuple[x509.Certificate, ...] = field(repr=False)
    _boundaries: tuple[dt.datetime, ...] = field(repr=False)
    """When a certificate of the bundle starts or stops being valid, sorted."""
    _verdicts: dict[tuple[bytes, ...], _Verdict] = field(default_factory=dict, repr=False)

    @property
    def count(self) -> int:
        return len(self.certificates)


def _boundaries(certs: Sequence[x509.Certificate]) -> list[dt.datetime]:
    # Times are whole seconds (certificates have no finer ones): valid at `now` iff
    # not_before <= now < not_after + 1 s.
    return [t for c in certs for t in (c.not_valid_before_utc, c.not_valid_after_utc + _ONE_SECOND)]


def load_trust(ca_bundle_pem: bytes) -> ClientTrust:
    """Parse a PEM bundle of one or more CA certificates; ValueError when it holds none."""
    try:
        certs = x509.load_pem_x509_certificates(ca_bundle_pem)
    except ValueError:
        certs = []
    if not certs:
        raise ValueError("no PEM certificate in the CA bundle")
    return ClientTrust(Store(certs), tuple(certs), tuple(sorted(_boundaries(certs))))


def _client_usage(
    _policy: object, _cert: x509.Certificate, usage: x509.ExtendedKeyUsage | None
) -> None:
    # Go's rule, for the leaf and every CA of the chain alike: no ExtendedKeyUsage means any
    # usage; otherwise clientAuth or anyExtendedKeyUsage must be listed.
    if usage is None:
        return
    if not {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & set(
        usage
    ):
        raise ValueError(NOT_FOR_CLIENTS)


def _may_sign_certificates(
    _policy: object, _cert: x509.Certificate, usage: x509.KeyUsage | None
) -> None:
    # Go's CheckSignatureFrom: a keyUsage, when present, must allow keyCertSign.
    if usage is not None and not usage.key_cert_sign:
        raise ValueError("CA certificate may not sign certificates")


# The Web PKI's rules are stricter than Go's x509.Verify, which kube-apiserver uses and every
# Kubernetes client certificate is made for: Go looks at no extension of a leaf but its
# extended key usage (kubeadm's carry no subjectAltName and no authorityKeyIdentifier; a
# certificate of the bundle presented as the leaf is accepted, CA or not), and of a CA it
# needs cA (checked by the library) and, if present, keyUsage keyCertSign, whatever their
# criticality. The extended key usage nests down the chain in both.
_LEAF_POLICY = ExtensionPolicy.permit_all().may_be_present(
    x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _client_usage
)
_ANY_LEAF_USAGE = ExtensionPolicy.permit_all()
_CA_POLICY = (
    ExtensionPolicy.permit_all()
    .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, None)
    .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _may_sign_certificates)
    .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _client_usage)
)


def _issuers(trust: ClientTrust, leaf: x509.Certificate) -> list[x509.Certificate]:
    """The CAs of the bundle that issued `leaf` as Go's CheckSignatureFrom sees it (cA, a
    keyUsage allowing keyCertSign, the signature): which reason to give once the library has
    refused, as it says why a candidate failed, not whether that candidate had signed."""
    found = []
    for ca in trust.certificates:
        constraints = _extension(ca, x509.BasicConstraints)
        if constraints is None or not constraints.ca:
            continue
        try:
            _may_sign_certificates(None, ca, _extension(ca, x509.KeyUsage))
            leaf.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        found.append(ca)
    return found


def _restricted(ca: x509.Certificate) -> bool:
    try:
        _client_usage(None, ca, _extension(ca, x509.ExtendedKeyUsage))
    except ValueError:
        return True
    return False


def _extension(cert: x509.Certificate, kind: type[_E]) -> _E | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _reason(
    trust: ClientTrust, chain: Sequence[x509.Certificate], now: dt.datetime, error: str
) -> str:
    """The failure as a stable reason, in the order Go finds them: the leaf's dates, a CA of
    the bundle that issued it, that CA's dates, then the extended key usage of the chain."""
    leaf = chain[0]
    if now < leaf.not_valid_before_utc:
        return NOT_YET_VALID
    if now > leaf.not_valid_after_utc:
        return EXPIRED
    if "candidates exhausted" in error:  # no chain to the bundle
        issuers = _issuers(trust, leaf)
        if not issuers:
            return UNKNOWN_AUTHORITY
        current = [c for c in issuers if c.not_valid_before_utc <= now <= c.not_valid_after_utc]
        if not current:
            return CA_OUTSIDE_VALIDITY
        if NOT_FOR_CLIENTS in error or any(_restricted(ca) for ca in current):
            return NOT_FOR_CLIENTS  # the CA restricts its usage
        return INVALID
    if NOT_FOR_CLIENTS in error:
        # The leaf's own usage, which the library looks at before any issuer, Go after.
        chained = _verify(trust, chain, now, _ANY_LEAF_USAGE)
        return NOT_FOR_CLIENTS if chained is None else _reason(trust, chain, now, chained)
    return INVALID


def _verify(
    trust: ClientTrust,
    chain: Sequence[x509.Certificate],
    now: dt.datetime,
    leaf_policy: ExtensionPolicy = _LEAF_POLICY,
) -> str | None:
    """None if the library accepts `chain` at `now`, else its message."""
    leaf, *intermediates = chain
    verifier = (
        PolicyBuilder()
        .store(trust.store)
        .time(now)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=leaf_policy)
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except VerificationError as exc:
        return str(exc)
    return None


def _verdict(trust: ClientTrust, chain: Sequence[x509.Certificate], now: dt.datetime) -> _Verdict:
    error = _verify(trust, chain, now)
    if error is None:
        accepted, reason = chain[0], None
    else:
        accepted, reason = None, _reason(trust, chain, now, error)
    own = _boundaries(chain)
    at = bisect.bisect_right(trust._boundaries, now)
    start = max(
        [t for t in own if t <= now] + list(trust._boundaries[at - 1 : at]),
        default=dt.datetime.min.replace(tzinfo=dt.UTC),
    )
    end = min(
        [t for t in own if t > now] + list(trust._boundaries[at : at + 1]),
        default=dt.datetime.max.replace(tzinfo=dt.UTC),
    )
    return _Verdict(accepted, reason, start, end)


def verify_client_certificate(
    trust: ClientTrust,
    chain_der: Sequence[bytes],
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """The leaf of `chain_der` (leaf first, then any intermediates the client sent) once it
    chains to a trusted CA, is valid at `now` and may authenticate a client, under the rules
    of Go's `x509.Verify` with `ExtKeyUsageClientAuth`; otherwise ClientCertificateError,
    whose message is one of the reasons above.

    Runs on every request, so each chain's verdict is kept with `trust` for as long as no
    certificate involved changes validity (a new bundle is a new `trust`, judged afresh).
    """
    if not chain_der:
        raise ClientCertificateError(NO_CERTIFICATE)
    # Whole seconds, as certificate times: the library then agrees with the verdict's span.
    moment = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    key = tuple(chain_der)
    verdict = trust._verdicts.get(key)
    if verdict is None or not verdict.start <= moment < verdict.end:
        try:
            chain = [x509.load_der_x509_certificate(der) for der in chain_der]
        except ValueError:
            raise ClientCertificateError(UNREADABLE) from None
        verdict = _verdict(trust, chain, moment)
        if len(trust._verdicts) >= _VERDICTS_KEPT:
            # Oldest first: a flood of one-off certificates only costs their own checks later.
            del trust._verdicts[next(iter(trust._verdicts))]
        trust._verdicts[key] = verdict
    if verdict.leaf is None:
        raise ClientCertificateError(verdict.reason or INVALID)
    return verdict.leaf
