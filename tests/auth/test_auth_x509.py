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
from tenant_proxy.auth.x509 import X509Authenticator, X509Settings, peer_certificate
from tenant_proxy.pki import KeyPair, issue_client_cert, issue_server_cert, new_ca

Serve = Callable[[web.Application, ssl.SSLContext | None], Awaitable[str]]

# OpenSSL's X509_V_FLAG_NO_CHECK_TIME: lets a test TLS layer accept an expired certificate so
# that the authenticator's own date check is what refuses it.
_NO_CHECK_TIME = 0x200000
NOW = dt.datetime.now(dt.UTC)


def _load(pair: KeyPair) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pair.cert_pem)


async def _who_am_i(request: web.Request) -> web.Response:
    cert = peer_certificate(request.transport.get_extra_info("ssl_object"))  # type: ignore[union-attr]
    try:
        identity = await X509Authenticator().authenticate(Credentials(peer_cert=cert))
    except AuthenticationError as err:
        return web.json_response({"reason": err.reason}, status=401)
    if identity is None:
        return web.json_response({"reason": "none"}, status=401)
    return web.json_response({"user": identity.user, "groups": list(identity.groups)})


def _mtls_server(
    server_tls: ssl.SSLContext, ca: KeyPair, check_time: bool = True
) -> ssl.SSLContext:
    server_tls.verify_mode = ssl.CERT_REQUIRED
    server_tls.load_verify_locations(cadata=ca.cert_pem.decode())
    if not check_time:
        server_tls.verify_flags |= _NO_CHECK_TIME
    return server_tls


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
    serve: Serve,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    ca: KeyPair,
    tmp_path: Path,
) -> None:
    url = await serve(_app(), _mtls_server(server_tls, ca))
    pair = issue_client_cert(ca, "alice", ["tenant-a-devs", "system:masters"])
    status, body = await _call(url, client_tls, pair, tmp_path)
    assert status == 200
    assert body == {"user": "alice", "groups": ["tenant-a-devs", "system:masters"]}


async def test_certificate_from_another_ca_fails_the_handshake(
    serve: Serve,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    ca: KeyPair,
    tmp_path: Path,
) -> None:
    url = await serve(_app(), _mtls_server(server_tls, ca))
    stranger = issue_client_cert(new_ca("other"), "alice", ["system:masters"])
    with pytest.raises(aiohttp.ClientError):
        await _call(url, client_tls, stranger, tmp_path)


@pytest.mark.parametrize(
    ("not_before", "not_after", "reason"),
    [
        (NOW - dt.timedelta(days=10), NOW - dt.timedelta(days=1), "client certificate expired"),
        (
            NOW + dt.timedelta(days=1),
            NOW + dt.timedelta(days=10),
            "client certificate not yet valid",
        ),
    ],
)
async def test_authenticator_rechecks_dates_when_tls_does_not(
    serve: Serve,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    ca: KeyPair,
    tmp_path: Path,
    not_before: dt.datetime,
    not_after: dt.datetime,
    reason: str,
) -> None:
    url = await serve(_app(), _mtls_server(server_tls, ca, check_time=False))
    pair = issue_client_cert(ca, "alice", not_before=not_before, not_after=not_after)
    status, body = await _call(url, client_tls, pair, tmp_path)
    assert (status, body) == (401, {"reason": reason})


async def test_expired_certificate_fails_a_normal_handshake(
    serve: Serve,
    server_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
    ca: KeyPair,
    tmp_path: Path,
) -> None:
    url = await serve(_app(), _mtls_server(server_tls, ca))
    pair = issue_client_cert(
        ca, "alice", not_before=NOW - dt.timedelta(days=10), not_after=NOW - dt.timedelta(days=1)
    )
    with pytest.raises(aiohttp.ClientError):
        await _call(url, client_tls, pair, tmp_path)


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


async def test_server_certificate_is_not_a_client_credential(ca: KeyPair) -> None:
    server = _load(issue_server_cert(ca, ["alice"]))
    with pytest.raises(AuthenticationError, match="client authentication"):
        await X509Authenticator().authenticate(Credentials(peer_cert=server))


async def test_certificate_without_extended_key_usage_is_accepted() -> None:
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, "alice")]
    identity = await X509Authenticator().authenticate(
        Credentials(peer_cert=_self_signed(x509.Name(subject)))
    )
    assert identity is not None
    assert identity.user == "alice"
