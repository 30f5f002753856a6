"""pki_verify: the handshake accepts any client certificate, the application verifies it.

Over real TLS sockets (asyncio's and uvloop's transports): a certificate no trusted CA signed
completes the handshake and reaches the server, where `verify_client_certificate` refuses it.
The verification rules (Go's x509.Verify for client auth, as kube-apiserver) are checked on
certificates built for each case.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tenant_proxy import pki, pki_verify
from tenant_proxy.emulator.testing import client_ssl, self_signed_client

NOW = dt.datetime.now(dt.UTC)
CA = pki.new_ca("client-ca")
SERVER_CA = pki.new_ca("server-ca")
TRUST = pki_verify.load_trust(CA.cert_pem)

Runner = Callable[[Coroutine[Any, Any, Any]], Any]
RUNNERS: dict[str, Runner] = {"asyncio": asyncio.run, "uvloop": uvloop.run}


def server_ctx(tmp: Path) -> ssl.SSLContext:
    pair = pki.issue_server_cert(SERVER_CA, ["127.0.0.1"])
    pair.write(tmp / "tls.crt", tmp / "tls.key")
    return pki_verify.server_context(tmp / "tls.crt", tmp / "tls.key")


async def handshake(server: ssl.SSLContext, client_pair: pki.KeyPair | None) -> tuple[bytes, ...]:
    """The chain the server saw from a client presenting `client_pair`, after a full exchange."""
    seen: asyncio.Future[tuple[bytes, ...]] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.set_result(pki_verify.peer_chain_der(writer.get_extra_info("ssl_object")))
        writer.write(b"answered")
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server)
    port = listener.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ssl(SERVER_CA.cert_pem, client_pair)
        )
        assert await asyncio.wait_for(reader.read(), 30) == b"answered"
        writer.close()
        return await asyncio.wait_for(seen, 30)
    finally:
        listener.close()


@pytest.mark.parametrize("loop", sorted(RUNNERS))
def test_a_foreign_certificate_completes_the_handshake_and_is_refused_after(
    loop: str, tmp_path: Path
) -> None:
    foreign = self_signed_client("mallory", ["system:masters"])
    chain = RUNNERS[loop](handshake(server_ctx(tmp_path), foreign))
    assert chain == (
        x509.load_pem_x509_certificate(foreign.cert_pem).public_bytes(serialization.Encoding.DER),
    )
    with pytest.raises(pki_verify.ClientCertificateError):
        pki_verify.verify_client_certificate(TRUST, chain)


@pytest.mark.parametrize("loop", sorted(RUNNERS))
def test_a_trusted_certificate_verifies_after_the_handshake(loop: str, tmp_path: Path) -> None:
    alice = pki.issue_client_cert(CA, "alice", ["tenant-a-devs"])
    chain = RUNNERS[loop](handshake(server_ctx(tmp_path), alice))
    leaf = pki_verify.verify_client_certificate(TRUST, chain)
    assert pki.subject_identity(leaf) == ("alice", ("tenant-a-devs",))


def test_no_certificate_is_no_chain(tmp_path: Path) -> None:
    assert asyncio.run(handshake(server_ctx(tmp_path), None)) == ()
    with pytest.raises(pki_verify.ClientCertificateError, match="no client certificate"):
        pki_verify.verify_client_certificate(TRUST, ())


def test_the_callback_survives_a_later_verify_mode_change(tmp_path: Path) -> None:
    ctx = server_ctx(tmp_path)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    chain = asyncio.run(handshake(ctx, self_signed_client("mallory")))
    assert len(chain) == 1


def test_a_context_prepared_by_hand_requests_any_certificate(tmp_path: Path) -> None:
    pair = pki.issue_server_cert(SERVER_CA, ["127.0.0.1"])
    pair.write(tmp_path / "s.crt", tmp_path / "s.key")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "s.crt", tmp_path / "s.key")
    pki_verify.request_any_client_certificate(ctx)
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    assert len(asyncio.run(handshake(ctx, self_signed_client("mallory")))) == 1


# --- the verification rules ------------------------------------------------------------------


def der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def kubeadm_like(
    usage: x509.ObjectIdentifier | None,
    not_before: dt.datetime = NOW - dt.timedelta(days=1),
    not_after: dt.datetime = NOW + dt.timedelta(days=1),
) -> tuple[pki_verify.ClientTrust, bytes]:
    """A CA and a client certificate shaped as kubeadm makes them: no SAN, no AKI."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - dt.timedelta(days=10))
        .not_valid_after(NOW + dt.timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, True, False, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    subject = [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
        x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes-admin"),
    ]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False),
            critical=True,
        )
    )
    if usage is not None:
        leaf = leaf.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    signed = leaf.sign(ca_key, hashes.SHA256())
    trust = pki_verify.load_trust(ca.public_bytes(serialization.Encoding.PEM))
    return trust, signed.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    "usage", [None, ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]
)
def test_kubeadm_client_certificates_verify(usage: x509.ObjectIdentifier | None) -> None:
    trust, leaf = kubeadm_like(usage)
    verified = pki_verify.verify_client_certificate(trust, [leaf])
    assert pki.subject_identity(verified) == ("kubernetes-admin", ("system:masters",))


def test_a_certificate_for_servers_only_is_refused() -> None:
    trust, leaf = kubeadm_like(ExtendedKeyUsageOID.SERVER_AUTH)
    with pytest.raises(pki_verify.ClientCertificateError, match="client authentication"):
        pki_verify.verify_client_certificate(trust, [leaf])


@pytest.mark.parametrize(
    ("not_before", "not_after", "reason"),
    [
        (NOW - dt.timedelta(days=2), NOW - dt.timedelta(days=1), "client certificate expired"),
        (NOW + dt.timedelta(days=1), NOW + dt.timedelta(days=2), "not yet valid"),
    ],
    ids=["expired", "not-yet-valid"],
)
def test_a_certificate_outside_its_validity_is_refused(
    not_before: dt.datetime, not_after: dt.datetime, reason: str
) -> None:
    trust, leaf = kubeadm_like(None, not_before, not_after)
    with pytest.raises(pki_verify.ClientCertificateError, match=reason):
        pki_verify.verify_client_certificate(trust, [leaf], NOW)


def test_the_verification_time_is_the_callers() -> None:
    trust, leaf = kubeadm_like(None)
    pki_verify.verify_client_certificate(trust, [leaf], NOW)
    with pytest.raises(pki_verify.ClientCertificateError):
        pki_verify.verify_client_certificate(trust, [leaf], NOW + dt.timedelta(days=3))


def test_intermediates_sent_by_the_client_complete_the_chain() -> None:
    root = trustme.CA()
    intermediate = root.create_child_ca()
    issued = intermediate.issue_cert("bob@example.com")
    chain = [der(blob.bytes()) for blob in issued.cert_chain_pems]
    trust = pki_verify.load_trust(root.cert_pem.bytes())
    assert (
        pki_verify.verify_client_certificate(trust, chain).public_bytes(serialization.Encoding.DER)
        == chain[0]
    )
    with pytest.raises(pki_verify.ClientCertificateError):
        pki_verify.verify_client_certificate(trust, chain[:1])


def test_a_certificate_of_the_bundle_is_its_own_anchor_even_a_ca() -> None:
    # Go's Verify: `if opts.Roots.contains(c)` the chain is [c]; a leaf's cA is not looked at
    # (the Web PKI's defaults refuse it). Presenting it takes the CA's own key.
    leaf = pki_verify.verify_client_certificate(TRUST, [der(CA.cert_pem)])
    assert pki.subject_identity(leaf)[0] == "client-ca"
    other = pki_verify.load_trust(pki.new_ca("other").cert_pem)
    with pytest.raises(pki_verify.ClientCertificateError, match="unknown authority"):
        pki_verify.verify_client_certificate(other, [der(CA.cert_pem)])


def test_any_ca_of_a_bundle_is_trusted() -> None:
    other = pki.new_ca("other")
    trust = pki_verify.load_trust(other.cert_pem + CA.cert_pem)
    assert trust.count == 2
    bob = pki.issue_client_cert(other, "bob")
    pki_verify.verify_client_certificate(trust, [der(bob.cert_pem)])
    pki_verify.verify_client_certificate(trust, [der(pki.issue_client_cert(CA, "al").cert_pem)])


def test_garbage_is_refused_as_unreadable() -> None:
    with pytest.raises(pki_verify.ClientCertificateError, match="unreadable"):
        pki_verify.verify_client_certificate(TRUST, [b"not a certificate"])


def test_a_bundle_without_certificates_is_an_error() -> None:
    with pytest.raises(ValueError, match="certificate"):
        pki_verify.load_trust(b"")


@pytest.mark.parametrize("switched_in_prepared", [True, False])
def test_the_listeners_own_context_decides_even_when_sni_switches_another_in(
    tmp_path: Path, switched_in_prepared: bool
) -> None:
    # As tenant_proxy.tls swaps in a reloaded context from its SNI callback.
    listener = server_ctx(tmp_path)
    if switched_in_prepared:
        switched = server_ctx(tmp_path)
    else:
        switched = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        switched.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
        switched.load_verify_locations(cadata=CA.cert_pem.decode())
        switched.verify_mode = ssl.CERT_OPTIONAL

    switches: list[ssl.SSLContext] = []

    def switch(sslobj: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
        sslobj.context = switched
        switches.append(sslobj.context)

    listener.sni_callback = switch
    assert len(asyncio.run(handshake(listener, self_signed_client("mallory")))) == 1
    assert switches == [switched]
