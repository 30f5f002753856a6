"""Authentication over real TLS: client certificates, static tokens, ServiceAccount JWTs."""

from __future__ import annotations

import base64
import datetime as dt
import json
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web

from tenant_proxy import pki_verify
from tenant_proxy.emulator.errors import StatusError
from tenant_proxy.emulator.identity import Authenticator, BoundObject, TokenIssuer, bearer_token
from tenant_proxy.emulator.testing import self_signed_client
from tenant_proxy.emulator.types import UserInfo
from tenant_proxy.pki import KeyPair, issue_client_cert, issue_server_cert, new_ca

REFERENCE = Path(__file__).resolve().parents[1] / "reference"


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return new_ca()


@pytest.fixture(scope="module")
def issuer() -> TokenIssuer:
    return TokenIssuer()


@pytest.fixture
def service_accounts() -> set[tuple[str, str]]:
    return {("team-a-dev", "ci-bot")}


@pytest.fixture
async def server(
    ca: KeyPair,
    issuer: TokenIssuer,
    service_accounts: set[tuple[str, str]],
    tmp_path: Path,
) -> AsyncIterator[str]:
    authn = Authenticator(
        ca.cert_pem,
        {"static-secret": UserInfo("ops", "u-1", ("operators",))},
        issuer,
        lambda ns, name: (ns, name) in service_accounts,
    )

    async def whoami(request: web.Request) -> web.Response:
        try:
            user = authn.authenticate(request)
        except StatusError as err:
            return web.json_response(err.status(), status=err.code)
        if user is None:
            return web.json_response(None)
        return web.json_response(
            {"name": user.name, "uid": user.uid, "groups": user.groups, "extra": dict(user.extra)}
        )

    app = web.Application()
    app.router.add_get("/whoami", whoami)
    pair = issue_server_cert(ca, ["127.0.0.1"])
    pair.write(tmp_path / "srv.crt", tmp_path / "srv.key")
    ctx = pki_verify.server_context(tmp_path / "srv.crt", tmp_path / "srv.key")  # as the emulator
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    yield f"https://127.0.0.1:{port}/whoami"
    await runner.cleanup()


def client_ctx(ca: KeyPair, tmp_path: Path, cert: KeyPair | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())
    if cert is not None:
        cert.write(tmp_path / "c.crt", tmp_path / "c.key")
        ctx.load_cert_chain(tmp_path / "c.crt", tmp_path / "c.key")
    return ctx


Call = Callable[..., Any]


@pytest.fixture
def call(server: str, ca: KeyPair, tmp_path: Path) -> Call:
    async def do(
        cert: KeyPair | None = None, token: str | None = None, **headers: str
    ) -> tuple[int, Any]:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        ctx = client_ctx(ca, tmp_path, cert)
        async with (
            aiohttp.ClientSession() as session,
            session.get(server, ssl=ctx, headers=headers) as resp,
        ):
            return resp.status, await resp.json()

    return do


async def test_client_certificate_gives_cn_as_user_and_o_as_groups(ca: KeyPair, call: Call) -> None:
    status, user = await call(cert=issue_client_cert(ca, "alice", ["tenant-a-devs", "x"]))
    assert status == 200
    assert user == {
        "name": "alice",
        "uid": "",
        "groups": ["tenant-a-devs", "x", "system:authenticated"],
        "extra": {},
    }


async def test_certificates_no_trusted_ca_signed_or_out_of_date_are_401(
    ca: KeyPair, call: Call
) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    expired = issue_client_cert(ca, "alice", not_before=long_ago, not_after=long_ago)
    for cert in (self_signed_client("admin", ["system:masters"]), expired):
        status, body = await call(cert=cert)
        assert (status, body["reason"]) == (401, "Unauthorized")


async def test_a_good_token_beside_a_foreign_certificate_authenticates(call: Call) -> None:
    # As kube-apiserver (apiserver/pkg/authentication/request/union: FailOnError false): the
    # x509 authenticator's error does not stop the token's.
    status, user = await call(
        cert=self_signed_client("admin", ["system:masters"]), token="static-secret"
    )
    assert (status, user["name"]) == (200, "ops")


async def test_no_credentials_is_nobody(call: Call) -> None:
    assert await call() == (200, None)


async def test_static_token_user_gets_authenticated_group(call: Call) -> None:
    status, user = await call(token="static-secret")
    assert (status, user["name"], user["groups"]) == (
        200,
        "ops",
        ["operators", "system:authenticated"],
    )


async def test_token_in_a_websocket_subprotocol_authenticates(call: Call) -> None:
    encoded = base64.urlsafe_b64encode(b"static-secret").rstrip(b"=").decode()
    protocols = f"base64url.bearer.authorization.k8s.io.{encoded}, v5.channel.k8s.io"
    status, user = await call(**{"Sec-WebSocket-Protocol": protocols})
    assert (status, user["name"]) == (200, "ops")


async def test_unknown_token_is_401_like_the_transcript(call: Call) -> None:
    status, body = await call(token="not-a-real-token")
    assert status == 401
    lines = (REFERENCE / "authn-401-bad-token.txt").read_text().splitlines()
    assert body == json.loads("\n".join(lines[lines.index("<") + 1 :]))


async def test_service_account_token_authenticates_as_the_service_account(
    issuer: TokenIssuer, call: Call
) -> None:
    token, _ = issuer.issue("team-a-dev", "ci-bot", "sa-uid", [issuer.issuer_url], 3600)
    status, user = await call(token=token)
    assert status == 200
    assert user == {
        "name": "system:serviceaccount:team-a-dev:ci-bot",
        "uid": "sa-uid",
        "groups": [
            "system:serviceaccounts",
            "system:serviceaccounts:team-a-dev",
            "system:authenticated",
        ],
        "extra": {},
    }


async def test_pod_bound_token_carries_pod_extra(issuer: TokenIssuer, call: Call) -> None:
    pod = BoundObject("Pod", "web-0", "pod-uid")
    token, _ = issuer.issue("team-a-dev", "ci-bot", "u", [issuer.issuer_url], 3600, pod)
    _, user = await call(token=token)
    assert user["extra"] == {
        "authentication.kubernetes.io/pod-name": ["web-0"],
        "authentication.kubernetes.io/pod-uid": ["pod-uid"],
    }


async def test_token_of_a_deleted_service_account_is_401(
    issuer: TokenIssuer, call: Call, service_accounts: set[tuple[str, str]]
) -> None:
    token, _ = issuer.issue("team-a-dev", "ci-bot", "u", [issuer.issuer_url], 3600)
    service_accounts.clear()
    assert (await call(token=token))[0] == 401


async def test_expired_or_foreign_audience_or_foreign_key_tokens_are_401(
    issuer: TokenIssuer, call: Call
) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    expired, _ = issuer.issue("team-a-dev", "ci-bot", "u", [issuer.issuer_url], 600, now=past)
    other_aud, _ = issuer.issue("team-a-dev", "ci-bot", "u", ["vault"], 3600)
    forged, _ = TokenIssuer().issue("team-a-dev", "ci-bot", "u", [issuer.issuer_url], 3600)
    for token in (expired, other_aud, forged):
        assert (await call(token=token))[0] == 401


def test_issued_token_verifies_with_the_published_jwks(issuer: TokenIssuer) -> None:
    token, expiry = issuer.issue("ns", "sa", "u", ["aud-1"], 3600)
    key = jwt.PyJWK(issuer.jwks()["keys"][0])
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience="aud-1")
    assert jwt.get_unverified_header(token)["kid"] == issuer.jwks()["keys"][0]["kid"]
    assert claims["sub"] == "system:serviceaccount:ns:sa"
    assert claims["exp"] == int(expiry.timestamp())
    assert issuer.verify(token, ["aud-1"]) == claims
    assert issuer.verify(token, ["aud-2"]) is None


def test_openid_documents_have_the_reference_shapes(issuer: TokenIssuer) -> None:
    config = issuer.openid_configuration("https://127.0.0.1:26443")
    assert config == {
        "issuer": "https://kubernetes.default.svc",
        "jwks_uri": "https://127.0.0.1:26443/openid/v1/jwks",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }
    (key,) = issuer.jwks()["keys"]
    assert list(key) == ["use", "kty", "kid", "alg", "n", "e"]
    assert (key["use"], key["kty"], key["alg"], key["e"]) == ("sig", "RSA", "RS256", "AQAB")


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("  Bearer abc  ", "abc"),
        ("Bearer  abc", None),
        ("Basic abc", None),
        ("Bearer", None),
        ("", None),
    ],
)
def test_bearer_header_parsing_follows_the_real_reader(header: str, token: str | None) -> None:
    assert bearer_token(header) == token
