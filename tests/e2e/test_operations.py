"""Running it: metrics, health, and certificates rotated without a restart."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from watching import session_as, tls_for

from tenant_proxy import pki
from tenant_proxy.demo import Demo

pytestmark = pytest.mark.e2e


async def scrape(demo: Demo) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert demo.proxy is not None
    async with aiohttp.ClientSession() as s, s.get(f"{demo.proxy.metrics_url}/metrics") as r:
        text = await r.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_requests_filtering_and_auth_failures(demo: Demo) -> None:
    async with session_as(demo, "alice", ["tenant-a-devs"]) as alice:
        async with alice.get("/api/v1/namespaces") as r:
            assert r.status == 200  # pushed down: the API server filters, nothing withheld here
        async with alice.get("/api/v1/persistentvolumes") as r:
            assert r.status == 200  # rewritten: the proxy withholds three of four PVs
    assert demo.proxy is not None
    ctx = ssl.create_default_context(cadata=demo.client_ca.cert_pem.decode())
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as anon:
        headers = {"Authorization": "Bearer not-a-token"}
        async with anon.get(f"{demo.proxy.tenant_url}/api/v1/namespaces", headers=headers) as r:
            assert r.status == 401
    metrics = await scrape(demo)
    listed = (
        "tenant_proxy_requests_total",
        (("code", "200"), ("listener", "tenant"), ("resource", "namespaces"), ("verb", "list")),
    )
    assert metrics[listed] >= 1
    withheld = ("tenant_proxy_objects_filtered_total", (("resource", "persistentvolumes"),))
    assert metrics[withheld] == 3
    failures = [
        v
        for (name, _), v in metrics.items()
        if name == "tenant_proxy_authentication_failures_total"
    ]
    assert sum(failures) >= 1
    assert metrics[("tenant_proxy_informer_synced", (("resource", "namespaces"),))] == 1


async def test_health_endpoints(demo: Demo) -> None:
    assert demo.proxy is not None
    async with aiohttp.ClientSession() as s:
        for path in ("/healthz", "/livez", "/readyz"):
            async with s.get(f"{demo.proxy.metrics_url}{path}") as r:
                assert (path, r.status) == (path, 200)


async def _server_serial(url: str, ctx: ssl.SSLContext) -> int:
    host, port = url.removeprefix("https://").rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port), ssl=ctx)
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True)
    writer.close()
    from cryptography import x509

    return x509.load_der_x509_certificate(der).serial_number


async def test_server_certificate_and_client_ca_rotate_without_restart(demo: Demo) -> None:
    proxy = demo.proxy
    assert proxy is not None
    tls = proxy.settings.tls
    ctx = ssl.create_default_context(cadata=demo.client_ca.cert_pem.decode())
    before = await _server_serial(proxy.tenant_url, ctx)
    pki.issue_server_cert(demo.client_ca, ["127.0.0.1", "localhost"]).write(
        tls.cert_file, tls.key_file
    )
    assert proxy.tls.reload_if_changed()
    assert await _server_serial(proxy.tenant_url, ctx) != before

    # A new client CA: certificates from it are accepted, those from the old one are 401
    # (as kube-apiserver: the handshake completes, the request is refused).
    new_ca = pki.new_ca("rotated-client-ca")
    assert tls.client_ca_file is not None
    tls.client_ca_file.write_bytes(new_ca.cert_pem)
    assert proxy.tls.reload_if_changed()
    old_client = tls_for(demo, "alice", ["tenant-a-devs"])
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=old_client)) as s,
        s.get(f"{proxy.tenant_url}/api/v1/namespaces") as r,
    ):
        assert r.status == 401
    demo.client_ca, old = new_ca, demo.client_ca
    new_client = tls_for(demo, "alice", ["tenant-a-devs"])
    new_client.load_verify_locations(cadata=old.cert_pem.decode())  # the server cert's CA
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=new_client)) as s:
        async with s.get(f"{proxy.tenant_url}/api/v1/namespaces") as r:
            assert r.status == 200
