"""The upstream client's deliberate settings, each against a small API server over real TLS."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tenant_proxy import pki
from tenant_proxy.config import UpstreamSettings
from tenant_proxy.upstream import Upstream, UpstreamError

BIG = b'{"kind":"ConfigMapList","items":[' + b'{"data":"' + b"x" * 50_000_000 + b'"}]}'
GZIPPED = gzip.compress(BIG, compresslevel=9)


async def answer_gzip(_request: web.Request) -> web.Response:
    return web.Response(
        body=GZIPPED, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )


async def answer_redirect(_request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": "https://elsewhere.invalid/steal"})


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[Upstream]:
    ca = pki.new_ca()
    server = pki.issue_server_cert(ca, ["127.0.0.1"])
    server.write(tmp_path / "s.crt", tmp_path / "s.key")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "s.crt", tmp_path / "s.key")
    app = web.Application()
    app.router.add_get("/gzip", answer_gzip)
    app.router.add_get("/redirect", answer_redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    (tmp_path / "token").write_text("proxy-token")
    client = Upstream(
        UpstreamSettings(
            server=f"https://127.0.0.1:{port}",
            ca_file=tmp_path / "ca.crt",
            token_file=tmp_path / "token",
        )
    )
    try:
        yield client
    finally:
        await client.close()
        await runner.cleanup()


async def test_compressed_answers_are_relayed_compressed_never_inflated(upstream: Upstream) -> None:
    """A 50 MB body gzipped to a few dozen KB must reach the proxy as those few KB."""
    assert len(GZIPPED) < 200_000
    resp = await upstream.send("GET", upstream.url("/gzip"), [("Accept-Encoding", "gzip")])
    async with resp:
        raw = await resp.content.read()
    assert resp.headers["Content-Encoding"] == "gzip"
    assert raw == GZIPPED


async def test_redirects_are_never_followed(upstream: Upstream) -> None:
    with pytest.raises(UpstreamError, match="redirect"):
        await upstream.send("GET", upstream.url("/redirect"), [])


async def test_no_connection_limit_and_no_total_timeout(tmp_path: Path) -> None:
    """The settings themselves: 0 means unlimited connections; None means no total timeout
    (a 300 s total would cut every watch)."""
    (tmp_path / "token").write_text("proxy-token")
    client = Upstream(UpstreamSettings(server="https://127.0.0.1:1", token_file=tmp_path / "token"))
    await client.start()
    try:
        session = client.session
        assert session.connector is not None
        assert session.connector.limit == 0
        assert session.connector.limit_per_host == 0
        assert session.timeout.total is None
        assert session.timeout.sock_read is None
        assert session.auto_decompress is False
    finally:
        await client.close()
