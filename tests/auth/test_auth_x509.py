"""x509 authentication: the identity of a client certificate the listener verified.

Over real TLS through the proxy's own listener context (`tenant_proxy.tls`): the handshake
accepts any certificate, `client_certificate` judges it on each request (the rules themselves:
tests/test_client_cert_verdicts.py), and the authenticator reads CN and O or refuses with the
reason.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tenant_proxy.auth.base import AuthenticationError, Credentials
from tenant_proxy.auth.x509 import X509Authenticator, X509Settings
from tenant_proxy.config import TLSSettings
from tenant_proxy.pki import KeyPair, issue_client_cert, issue_server_cert, new_ca
from tenant_proxy.tls import build_context, client_certificate

Serve = Callable[[web.Application, ssl.SSLContext | None], Awaitable[str]]

NOW = dt.datetime.now(dt.UTC)


def _load(pair: KeyPair) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pair.cert_pem)


async def _who_am_i(request: web.Request) -> web.Response:
    assert request.transport is not None
    cert, problem = client_certificate(request.transport.get_extra_info("ssl_object"))
    creds = Credentials(peer_cert=cert, peer_cert_problem=problem)
    try:
        identity = await X509Authenticator().authenticate(creds)
    except AuthenticationError as err:
        return web.json_response({"reason": err.reason}, status=401)
    if identity is None:
        return web.json_response({"reason": "none"}, status=401)
    return web.json_response({"user": identity.user, "groups": list(identity.groups)})


def _listener(server_pair: KeyPair, ca: KeyPair, tmp_path: Path) -> ssl.SSLContext:
    """The proxy's listener context, trusting `ca` for client certificates."""
    server_pair.write(tmp_path / "server.crt", tmp_path / "server.key")
    (tmp_path / "client-ca.crt").write_bytes(ca.cert_pem)
    return build_context(
        TLSSettings(
            cert_file=tmp_path / "server.crt",
            key_file=tmp_path / "server.key",
            client_ca_file=tmp_path / "client-ca.crt",
        )
    )


async def _call(
    url: str, client_tls: ssl.SSLContext, pair: KeyPair, tmp_path: Path
) -> tuple[int, dict[str, object]]:
    cert, key = tmp_path / "client.crt", tmp_path / "client.key"
    pair.write(cert, key)
    client_tls.load_cert_chain(cert, key)
    async with aiohttp.ClientSession() as session, session.get(url, ssl=client_tls) as resp:
        return resp.status, await resp.json()


def _app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", _who_am_i)
    return app


async def test_user_is_cn_and_groups_are_every_o_over_real_tls(
    serve: Serve, server_pair: KeyPair, client_tls: ssl.SSLContext, ca: KeyPair, tmp_path: Path
) -> None:
    url = await serve(_app(), _listener(server_pair, ca, tmp_path))
    pair = issue_client_cert(ca, "alice", ["tenant-a-devs", "system:masters"])
    status, body = await _call(url, client_tls, pair, tmp_path)
    assert status == 200
    assert body == {"user": "alice", "groups": ["tenant-a-devs", "system:masters"]}


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (
            lambda _ca: issue_client_cert(new_ca("other"), "alice", ["system:masters"]),
            "client certificate signed by unknown authority",
        ),
        (
            lambda ca: issue_client_cert(
                ca, "alice", not_before=NOW - dt.timedelta(days=10), not_after=NOW - dt.timedelta(1)
            ),
            "client certificate expired",
        ),
        (
            lambda ca: issue_client_cert(
                ca, "alice", not_before=NOW + dt.timedelta(days=1), not_after=NOW + dt.timedelta(9)
            ),
            "client certificate not yet valid",
        ),
        (
            lambda ca: issue_server_cert(ca, ["alice"]),
            "certificate not issued for client authentication",
        ),
    ],
    ids=["another CA", "expired", "not yet valid", "server certificate"],
)
async def test_an_unverifiable_certificate_completes_the_handshake_and_is_refused_with_why(
    serve: Serve,
    server_pair: KeyPair,
    client_tls: ssl.SSLContext,
    ca: KeyPair,
    tmp_path: Path,
    make: Callable[[KeyPair], KeyPair],
    reason: str,
) -> None:
    url = await serve(_app(), _listener(server_pair, ca, tmp_path))
    status, body = await _call(url, client_tls, make(ca), tmp_path)
    assert (status, body) == (401, {"reason": reason})


def _self_signed(subject: x509.Name) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(NOW + dt.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )


@pytest.mark.parametrize(
    "subject",
    [
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters")],
        [x509.NameAttribute(NameOID.COMMON_NAME, "  ")],
    ],
)
async def test_certificate_without_common_name_is_refused(
    subject: list[x509.NameAttribute[str]],
) -> None:
    cert = _self_signed(x509.Name(subject))
    with pytest.raises(AuthenticationError, match="no common name"):
        await X509Authenticator().authenticate(Credentials(peer_cert=cert))


async def test_no_certificate_or_disabled_means_not_my_kind(ca: KeyPair) -> None:
    assert await X509Authenticator().authenticate(Credentials(bearer_token="t")) is None
    cert = _load(issue_client_cert(ca, "alice"))
    disabled = X509Authenticator(X509Settings(enabled=False))
    assert await disabled.authenticate(Credentials(peer_cert=cert)) is None


async def test_identity_method_is_x509(ca: KeyPair) -> None:
    cert = _load(issue_client_cert(ca, "alice", ["g1", "g2"]))
    identity = await X509Authenticator().authenticate(Credentials(peer_cert=cert))
    assert identity is not None
    assert (identity.user, identity.groups, identity.method) == ("alice", ("g1", "g2"), "x509")


async def test_a_refused_certificate_beside_a_token_leaves_the_decision_to_the_token() -> None:
    creds = Credentials(peer_cert_problem="client certificate expired", bearer_token="t")
    assert await X509Authenticator().authenticate(creds) is None
    with pytest.raises(AuthenticationError, match="client certificate expired"):
        await X509Authenticator().authenticate(
            Credentials(peer_cert_problem="client certificate expired")
        )
