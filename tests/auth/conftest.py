"""Fixtures for the auth tests: a PKI, TLS contexts and aiohttp servers on real sockets."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from auth_fakes import TOKENREVIEWS, Counter, Issuer, Serve, Upstream
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tenant_proxy.pki import KeyPair, issue_server_cert, new_ca


def review_of(token: str) -> dict[str, Any]:
    """The TokenReview a client POSTs for `token`."""
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    }


@pytest.fixture(scope="session")
def ca() -> KeyPair:
    return new_ca("auth-tests-ca")


@pytest.fixture(scope="session")
def server_pair(ca: KeyPair) -> KeyPair:
    return issue_server_cert(ca, ["127.0.0.1", "localhost"])


@pytest.fixture
def server_tls(ca: KeyPair, server_pair: KeyPair, tmp_path: Path) -> ssl.SSLContext:
    """A server context presenting a certificate from `ca`, asking for no client certificate."""
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    server_pair.write(cert, key)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


@pytest.fixture
def client_tls(ca: KeyPair) -> ssl.SSLContext:
    """A client context trusting `ca` only."""
    return ssl.create_default_context(cadata=ca.cert_pem.decode())


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start an app on 127.0.0.1 (free port, production runner); returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application, tls: ssl.SSLContext | None) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        port = runner.addresses[0][1]
        return f"{'https' if tls else 'http'}://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
async def issuer(
    serve: Serve,
    server_tls: ssl.SSLContext,
    ca: KeyPair,
    tmp_path: Path,
    rsa_key: rsa.RSAPrivateKey,
    ec_key: ec.EllipticCurvePrivateKey,
) -> Issuer:
    counter = Counter()
    holder: list[Issuer] = []

    async def discovery(request: web.Request) -> web.Response:
        await counter.hit(request.path)
        if holder[0].down:
            return web.Response(status=503)
        return web.json_response({"issuer": holder[0].url, "jwks_uri": f"{holder[0].url}/keys"})

    async def keys(request: web.Request) -> web.Response:
        await counter.hit(request.path)
        if holder[0].down:
            return web.Response(status=503)
        return web.json_response(holder[0].jwks())

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/keys", keys)
    url = await serve(app, server_tls)
    ca_file = tmp_path / "issuer-ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    holder.append(Issuer(url, ca_file, counter))
    holder[0].add_key("rsa-1", rsa_key)
    holder[0].add_key("ec-1", ec_key)
    return holder[0]


@pytest.fixture
async def upstream(
    serve: Serve, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> AsyncIterator[tuple[Upstream, Callable[[str], Awaitable[dict[str, Any]]]]]:
    fake = Upstream()
    app = web.Application()
    app.router.add_post(TOKENREVIEWS, fake.handle)
    url = await serve(app, server_tls)
    async with aiohttp.ClientSession() as session:

        async def review(token: str) -> dict[str, Any]:
            async with session.post(
                url + TOKENREVIEWS, json=review_of(token), ssl=client_tls
            ) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"TokenReview answered {resp.status}")
                status: dict[str, Any] = (await resp.json())["status"]
                return status

        yield fake, review
