"""Fixtures for the auth tests: a PKI, TLS contexts and aiohttp servers on real sockets."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

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
