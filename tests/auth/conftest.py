"""Fixtures for the auth tests: a PKI, TLS contexts and aiohttp servers on real sockets."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tenant_proxy.auth.tokenreview import review_body
from tenant_proxy.pki import KeyPair, issue_server_cert, new_ca

Serve = Callable[[web.Application, ssl.SSLContext | None], Awaitable[str]]


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


class Counter:
    """Counts requests per path and lets a test wait for a count without sleeping."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._changed = asyncio.Condition()

    def __getitem__(self, path: str) -> int:
        return self.counts.get(path, 0)

    async def hit(self, path: str) -> None:
        async with self._changed:
            self.counts[path] = self[path] + 1
            self._changed.notify_all()

    async def wait_for(self, path: str, count: int) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self[path] >= count), 5)


class Issuer:
    """An in-process OIDC issuer over HTTPS: discovery + JWKS, signing tokens with its keys."""

    def __init__(self, url: str, ca_file: Path, counter: Counter) -> None:
        self.url = url
        self.ca_file = ca_file
        self.requests = counter
        self.keys: dict[str, PrivateKey] = {}
        self.published: set[str] = set()
        self.down = False

    def add_key(self, kid: str, key: PrivateKey, publish: bool = True) -> None:
        self.keys[kid] = key
        if publish:
            self.published.add(kid)

    def jwks(self) -> dict[str, object]:
        keys = []
        for kid in sorted(self.published):
            public = self.keys[kid].public_key()
            if isinstance(public, rsa.RSAPublicKey):
                jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
            else:
                jwk = ECAlgorithm.to_jwk(public, as_dict=True)
            keys.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": keys}

    def token(
        self,
        claims: dict[str, object] | None = None,
        kid: str = "rsa-1",
        alg: str | None = None,
        drop: tuple[str, ...] = (),
        headers: dict[str, object] | None = None,
    ) -> str:
        now = int(time.time())
        payload: dict[str, object] = {
            "iss": self.url,
            "aud": "tenant-proxy",
            "sub": "alice",
            "iat": now,
            "exp": now + 600,
            "groups": ["tenant-a-devs"],
        }
        payload.update(claims or {})
        for name in drop:
            payload.pop(name, None)
        key = self.keys[kid]
        algorithm = alg or ("RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256")
        return jwt.encode(
            payload, key, algorithm=algorithm, headers={"kid": kid, **(headers or {})}
        )


PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


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


TOKENREVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"


class Upstream:
    """Answers TokenReviews as tokenreview-valid.txt / tokenreview-invalid.txt show."""

    def __init__(self) -> None:
        self.valid: dict[str, dict[str, Any]] = {}
        self.calls = Counter()
        self.failing = False
        self.gate: asyncio.Event | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        await self.calls.hit(TOKENREVIEWS)
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            return web.json_response({"kind": "Status", "code": 500}, status=500)
        token = body["spec"]["token"]
        if token in self.valid:
            status: dict[str, Any] = {"authenticated": True, "user": self.valid[token]}
        else:
            status = {"user": {}, "error": "invalid bearer token"}
        return web.json_response({**body, "status": status}, status=201)


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
                url + TOKENREVIEWS, json=review_body(token), ssl=client_tls
            ) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"TokenReview answered {resp.status}")
                status: dict[str, Any] = (await resp.json())["status"]
                return status

        yield fake, review
