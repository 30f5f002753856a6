"""Client certificates are judged as kube-apiserver judges them, on every request.

`pki_verify.verify_client_certificate` (cryptography's verifier under Go's rules) against an
oracle written from Go's crypto/x509 (`client_cert_worlds.go_verdict`), on generated
bundles and leaves; the verdicts it keeps per chain against the passing of time; and the
proxy's listener (`tenant_proxy.tls`) over real TLS, across a reload of the client CA.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from client_cert_worlds import (
    ANY,
    CLIENT,
    NOW,
    SERVER,
    CASpec,
    World,
    build,
    der,
    go_verdict,
    library_verdict,
    pem,
    worlds,
)
from hypothesis import HealthCheck, given, settings

from tenant_proxy import pki, pki_verify
from tenant_proxy.config import TLSSettings
from tenant_proxy.emulator.testing import client_ssl
from tenant_proxy.tls import ReloadingTLS, client_certificate

SECOND = dt.timedelta(seconds=1)


# CLIENT_CERT_EXAMPLES=20000 for a hard run (about 3 minutes).
EXAMPLES = int(os.environ.get("CLIENT_CERT_EXAMPLES", "60"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_verdicts_are_gos(world: World) -> None:
    bundle, leaf = build(world)
    assert library_verdict(bundle, leaf, NOW) == go_verdict(bundle, leaf, NOW)


def _world(**changes: Any) -> World:
    plain = World(
        roots=(CASpec(),),
        roots_in_bundle=(True, True, True),
        renewed=None,
        renewed_first=False,
        intermediate=None,
        intermediate_in_bundle=False,
        issuer="root:0",
        leaf_window="valid",
        leaf_eku=(CLIENT,),
        leaf_is_ca=False,
        leaf_in_bundle=False,
    )
    return dataclasses.replace(plain, **changes)


# Where the hand-written verifier this one replaced parted from Go (found by the property test
# against it), and the library's Web PKI defaults did too.
@pytest.mark.parametrize(
    ("world", "verdict"),
    [
        pytest.param(_world(), None, id="plain"),
        pytest.param(_world(leaf_eku=None), None, id="no extended key usage: any usage"),
        pytest.param(_world(leaf_eku=(ANY,)), None, id="anyExtendedKeyUsage"),
        pytest.param(_world(leaf_eku=(SERVER,)), pki_verify.NOT_FOR_CLIENTS, id="for servers only"),
        pytest.param(_world(roots=(CASpec(), CASpec()), issuer="root:1"), None, id="several CAs"),
        pytest.param(
            _world(roots=(CASpec(is_ca=False),)),
            pki_verify.UNKNOWN_AUTHORITY,
            id="a certificate of the bundle that is no CA vouches for nothing",
        ),
        pytest.param(
            _world(roots=(CASpec(key_usage="no-certsign"),)),
            pki_verify.UNKNOWN_AUTHORITY,
            id="nor one whose keyUsage forbids signing certificates",
        ),
        pytest.param(
            _world(roots=(CASpec(eku=(SERVER,)),)),
            pki_verify.NOT_FOR_CLIENTS,
            id="a CA's extended key usage binds what it issues",
        ),
        pytest.param(_world(roots=(CASpec(eku=(ANY,)),)), None, id="CA for any usage"),
        pytest.param(
            _world(roots=(CASpec(window="expired"),), renewed="valid", renewed_first=False),
            None,
            id="a renewed CA (same name and key) in the bundle beside the expired one",
        ),
        pytest.param(
            _world(roots=(CASpec(window="expired"),)),
            pki_verify.CA_OUTSIDE_VALIDITY,
            id="expired CA",
        ),
        pytest.param(
            _world(roots=(CASpec(key_usage="absent", ca_critical=False),)),
            None,
            id="CA without keyUsage, basicConstraints not critical (Web PKI refuses)",
        ),
        pytest.param(
            _world(leaf_is_ca=True), None, id="a CA certificate as the leaf (Web PKI refuses)"
        ),
        pytest.param(
            _world(issuer="foreign", leaf_eku=(SERVER,)),
            pki_verify.UNKNOWN_AUTHORITY,
            id="the issuer before the usage",
        ),
        pytest.param(
            _world(issuer="foreign", leaf_in_bundle=True), None, id="the leaf in the bundle"
        ),
        pytest.param(
            _world(intermediate=CASpec(), intermediate_in_bundle=True, issuer="intermediate"),
            None,
            id="intermediate in the bundle",
        ),
        pytest.param(
            _world(intermediate=CASpec(), issuer="intermediate"),
            pki_verify.UNKNOWN_AUTHORITY,
            id="intermediate not in the bundle (the client's chain is not seen)",
        ),
    ],
)
def test_situations(world: World, verdict: str | None) -> None:
    bundle, leaf = build(world)
    assert go_verdict(bundle, leaf, NOW) == verdict
    assert library_verdict(bundle, leaf, NOW) == verdict


# -- verdicts kept per chain ----------------------------------------------------------------


def test_a_kept_verdict_ends_when_a_certificate_expires() -> None:
    bundle, leaf = build(_world(leaf_window="ends now"))
    trust = pki_verify.load_trust(pem(bundle))
    chain = [der(leaf)]
    assert pki_verify.verify_client_certificate(trust, chain, NOW - SECOND) == leaf
    for later in (NOW + SECOND, NOW + dt.timedelta(days=1)):
        with pytest.raises(pki_verify.ClientCertificateError, match=pki_verify.EXPIRED):
            pki_verify.verify_client_certificate(trust, chain, later)
    assert pki_verify.verify_client_certificate(trust, chain, NOW) == leaf


def test_a_kept_refusal_ends_when_the_certificate_becomes_valid() -> None:
    bundle, leaf = build(_world(leaf_window="starts now"))
    trust = pki_verify.load_trust(pem(bundle))
    with pytest.raises(pki_verify.ClientCertificateError, match=pki_verify.NOT_YET_VALID):
        pki_verify.verify_client_certificate(trust, [der(leaf)], NOW - SECOND)
    assert pki_verify.verify_client_certificate(trust, [der(leaf)], NOW) == leaf


def test_a_kept_verdict_ends_when_the_ca_expires() -> None:
    bundle, leaf = build(_world(roots=(CASpec(window="ends now"),)))
    trust = pki_verify.load_trust(pem(bundle))
    assert pki_verify.verify_client_certificate(trust, [der(leaf)], NOW) == leaf
    with pytest.raises(pki_verify.ClientCertificateError, match="CA certificate expired"):
        pki_verify.verify_client_certificate(trust, [der(leaf)], NOW + SECOND)


def test_a_verdict_belongs_to_its_bundle() -> None:
    bundle, leaf = build(_world())
    trust = pki_verify.load_trust(pem(bundle))
    assert pki_verify.verify_client_certificate(trust, [der(leaf)], NOW) == leaf
    other = pki_verify.load_trust(pki.new_ca("other").cert_pem)
    with pytest.raises(pki_verify.ClientCertificateError, match="unknown authority"):
        pki_verify.verify_client_certificate(other, [der(leaf)], NOW)


# -- the listener, over real TLS, across a reload ------------------------------------------


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[tuple[ReloadingTLS, str, pki.KeyPair]]:
    """A server on ReloadingTLS whose answer is `client_certificate`'s verdict."""
    server_ca, client_ca = pki.new_ca("server-ca"), pki.new_ca("client-ca")
    pki.issue_server_cert(server_ca, ["127.0.0.1"]).write(tmp_path / "s.crt", tmp_path / "s.key")
    (tmp_path / "ca.crt").write_bytes(client_ca.cert_pem)
    (tmp_path / "server-ca.crt").write_bytes(server_ca.cert_pem)
    tls = ReloadingTLS(
        TLSSettings(
            cert_file=tmp_path / "s.crt",
            key_file=tmp_path / "s.key",
            client_ca_file=tmp_path / "ca.crt",
        )
    )

    async def verdict(request: web.Request) -> web.Response:
        assert request.transport is not None
        cert, problem = client_certificate(request.transport.get_extra_info("ssl_object"))
        user = pki.subject_identity(cert)[0] if cert is not None else None
        port = request.transport.get_extra_info("peername")[1]
        return web.json_response({"user": user, "problem": problem, "port": port})

    app = web.Application()
    app.router.add_get("/", verdict)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.listener_context)
    await site.start()
    try:
        yield tls, f"https://127.0.0.1:{runner.addresses[0][1]}/", client_ca
    finally:
        await runner.cleanup()


async def _ask(session: aiohttp.ClientSession, url: str) -> dict[str, object]:
    """The verdict, and the client's port (which connection asked) under "port"."""
    async with session.get(url) as resp:
        assert resp.status == 200
        answer: dict[str, object] = await resp.json()
        return answer


async def _verdict(session: aiohttp.ClientSession, url: str) -> dict[str, object]:
    answer = await _ask(session, url)
    del answer["port"]
    return answer


def _session(server_ca: Path, pair: pki.KeyPair | None) -> aiohttp.ClientSession:
    ctx: ssl.SSLContext = client_ssl(server_ca.read_bytes(), pair)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=1))


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda ca: pki.issue_client_cert(ca, "alice"), None),
        (lambda ca: pki.issue_client_cert(pki.new_ca("x"), "alice"), "unknown authority"),
        (
            lambda ca: pki.issue_client_cert(
                ca, "alice", not_before=NOW - 3 * dt.timedelta(1), not_after=NOW - dt.timedelta(1)
            ),
            "client certificate expired",
        ),
        (lambda ca: pki.issue_server_cert(ca, ["alice"]), "not issued for client authentication"),
    ],
)
async def test_each_request_is_judged(
    listener: tuple[ReloadingTLS, str, pki.KeyPair],
    tmp_path: Path,
    make: Callable[[pki.KeyPair], pki.KeyPair],
    problem: str | None,
) -> None:
    _, url, client_ca = listener
    async with _session(tmp_path / "server-ca.crt", make(client_ca)) as session:
        answer = await _verdict(session, url)
    if problem is None:
        assert answer == {"user": "alice", "problem": None}
    else:
        assert answer["user"] is None
        assert problem in str(answer["problem"])


async def test_without_a_certificate_there_is_nothing_to_judge(
    listener: tuple[ReloadingTLS, str, pki.KeyPair], tmp_path: Path
) -> None:
    _, url, _ = listener
    async with _session(tmp_path / "server-ca.crt", None) as session:
        assert await _verdict(session, url) == {"user": None, "problem": None}


async def test_a_reloaded_bundle_judges_open_connections_at_once(
    listener: tuple[ReloadingTLS, str, pki.KeyPair], tmp_path: Path
) -> None:
    tls, url, client_ca = listener
    new_ca = pki.new_ca("new-client-ca")
    old_alice = pki.issue_client_cert(client_ca, "alice")
    async with _session(tmp_path / "server-ca.crt", old_alice) as session:
        before = await _ask(session, url)
        assert (before["user"], before["problem"]) == ("alice", None)
        (tmp_path / "ca.crt").write_bytes(new_ca.cert_pem + b"\n")  # another size: a change
        assert tls.reload_if_changed()
        after = await _ask(session, url)
        assert after == {
            "user": None,
            "problem": pki_verify.UNKNOWN_AUTHORITY,
            "port": before["port"],  # the same keep-alive connection
        }
    async with _session(tmp_path / "server-ca.crt", pki.issue_client_cert(new_ca, "bob")) as s:
        assert await _verdict(s, url) == {"user": "bob", "problem": None}
