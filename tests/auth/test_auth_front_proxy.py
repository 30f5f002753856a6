from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.auth.base import AuthenticationError, Credentials, unescape_extra_key
from tenant_proxy.auth.front_proxy import (
    FrontProxyAuthenticator,
    FrontProxySettings,
    is_trusted_source,
    parse_xfcc,
)
from tenant_proxy.pki import KeyPair, issue_client_cert

Serve = Callable[[web.Application, ssl.SSLContext | None], Awaitable[str]]
Send = Callable[[FrontProxySettings, list[tuple[str, str]]], Awaitable[dict[str, Any]]]


@pytest.fixture
def send(serve: Serve) -> Send:
    """Sends headers over a real socket to a server that authenticates with the settings."""

    async def run(settings: FrontProxySettings, headers: list[tuple[str, str]]) -> dict[str, Any]:
        async def handler(request: web.Request) -> web.Response:
            creds = Credentials(remote_ip=request.remote or "", headers=request.headers)
            try:
                identity = await FrontProxyAuthenticator(settings).authenticate(creds)
            except AuthenticationError as err:
                return web.json_response({"error": err.reason})
            if identity is None:
                return web.json_response({"identity": None})
            return web.json_response(
                {
                    "user": identity.user,
                    "groups": list(identity.groups),
                    "extra": {k: list(v) for k, v in identity.extra.items()},
                }
            )

        app = web.Application()
        app.router.add_get("/", handler)
        url = await serve(app, None)
        return await _raw_get(url, headers)

    return run


async def _raw_get(url: str, headers: list[tuple[str, str]]) -> dict[str, Any]:
    # Raw HTTP/1.1: aiohttp's client merges repeated headers that differ only in case.
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = ["GET / HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    body: dict[str, Any] = json.loads(response.split(b"\r\n\r\n", 1)[1])
    return body


REMOTE_HEADERS = [
    ("X-Remote-User", "alice"),
    ("X-Remote-Group", "tenant-a-devs"),
    ("x-remote-group", "viewers"),
    ("X-Remote-Extra-Scopes", "view"),
    ("X-Remote-Extra-Scopes", "edit"),
    ("X-Remote-Extra-Example.com%2FTeam", "a"),
]


async def test_headers_from_a_trusted_cidr_name_the_user(send: Send) -> None:
    body = await send(FrontProxySettings(trusted_cidrs=("127.0.0.0/8",)), REMOTE_HEADERS)
    assert body == {
        "user": "alice",
        "groups": ["tenant-a-devs", "viewers"],
        "extra": {"scopes": ["view", "edit"], "example.com/team": ["a"]},
    }


async def test_headers_from_an_untrusted_source_are_ignored(send: Send) -> None:
    body = await send(FrontProxySettings(trusted_cidrs=("10.0.0.0/8",)), REMOTE_HEADERS)
    assert body == {"identity": None}


async def test_trusted_source_without_headers_is_not_ours(send: Send) -> None:
    body = await send(FrontProxySettings(trusted_cidrs=("127.0.0.1/32",)), [])
    assert body == {"identity": None}


@pytest.mark.parametrize(
    "headers",
    [[("X-Remote-User", "")], [("X-Remote-User", "alice"), ("X-Remote-User", "admin")]],
)
async def test_empty_or_repeated_user_is_refused(
    send: Send, headers: list[tuple[str, str]]
) -> None:
    body = await send(FrontProxySettings(trusted_cidrs=("127.0.0.0/8",)), headers)
    assert "error" in body


def _xfcc(pair: KeyPair) -> str:
    cert = urllib.parse.quote(pair.cert_pem.decode(), safe="")
    return f'By=spiffe://mesh/proxy;Hash=abc;Cert="{cert}";Subject="CN=ignored"'


async def test_xfcc_certificate_names_the_user(send: Send, ca: KeyPair) -> None:
    settings = FrontProxySettings(trusted_cidrs=("127.0.0.0/8",), source="xfcc")
    mallory = issue_client_cert(ca, "mallory", ["system:masters"])
    alice = issue_client_cert(ca, "alice", ["tenant-a-devs", "viewers"])
    # Two proxies: the last element is the one our direct peer added.
    header = f"{_xfcc(mallory)},{_xfcc(alice)}"
    body = await send(settings, [("X-Forwarded-Client-Cert", header)])
    assert body == {"user": "alice", "groups": ["tenant-a-devs", "viewers"], "extra": {}}
    untrusted = FrontProxySettings(trusted_cidrs=("192.0.2.0/24",), source="xfcc")
    assert await send(untrusted, [("X-Forwarded-Client-Cert", header)]) == {"identity": None}


async def test_xfcc_without_a_usable_certificate_is_refused(send: Send, ca: KeyPair) -> None:
    settings = FrontProxySettings(trusted_cidrs=("127.0.0.0/8",), source="xfcc")
    now = dt.datetime.now(dt.UTC)
    expired = issue_client_cert(
        ca, "alice", not_before=now - dt.timedelta(days=2), not_after=now - dt.timedelta(days=1)
    )
    for header in ('Hash=abc;Subject="CN=alice"', 'Cert="garbage"', _xfcc(expired)):
        body = await send(settings, [("X-Forwarded-Client-Cert", header)])
        assert "error" in body, header


async def test_allowed_client_names_require_the_proxy_certificate(ca: KeyPair) -> None:
    settings = FrontProxySettings(
        trusted_cidrs=("127.0.0.0/8",), allowed_client_names=("front-proxy",)
    )
    authenticator = FrontProxyAuthenticator(settings)
    headers = {"X-Remote-User": "alice"}
    proxy_cert = x509.load_pem_x509_certificate(issue_client_cert(ca, "front-proxy").cert_pem)
    other_cert = x509.load_pem_x509_certificate(issue_client_cert(ca, "alice").cert_pem)
    base = Credentials(remote_ip="127.0.0.1", headers=headers)
    assert await authenticator.authenticate(base) is None
    with_other = Credentials(remote_ip="127.0.0.1", headers=headers, peer_cert=other_cert)
    assert await authenticator.authenticate(with_other) is None
    with_proxy = Credentials(remote_ip="127.0.0.1", headers=headers, peer_cert=proxy_cert)
    identity = await authenticator.authenticate(with_proxy)
    assert identity is not None
    assert identity.user == "alice"


def test_settings_require_valid_cidrs() -> None:
    with pytest.raises(ValueError, match="CIDR"):
        FrontProxySettings(trusted_cidrs=())
    with pytest.raises(ValueError, match="does not appear to be"):
        FrontProxySettings(trusted_cidrs=("not-a-cidr",))


@pytest.mark.parametrize(
    ("ip", "trusted"),
    [
        ("127.0.0.1", True),
        ("::ffff:127.0.0.1", True),
        ("10.1.2.3", True),
        ("11.0.0.1", False),
        ("fd00::1", True),
        ("fe80::1%eth0", False),
        ("", False),
        ("garbage", False),
    ],
)
def test_trusted_source_matching(ip: str, trusted: bool) -> None:
    networks = FrontProxySettings(trusted_cidrs=("127.0.0.0/8", "10.0.0.0/8", "fd00::/8")).networks
    assert is_trusted_source(ip, networks) is trusted


def test_parse_xfcc_respects_quotes() -> None:
    header = 'By=a;Subject="CN=x,O=a;b";URI=spiffe://x,Hash=h;Subject="O=\\"q\\""'
    assert parse_xfcc(header) == [
        {"by": "a", "subject": "CN=x,O=a;b", "uri": "spiffe://x"},
        {"hash": "h", "subject": 'O="q"'},
    ]


@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=20))
def test_extra_key_round_trips_through_percent_encoding(key: str) -> None:
    lowered = key.lower()
    encoded = urllib.parse.quote(lowered, safe="")
    assert unescape_extra_key(encoded) == lowered
