"""Shared pieces of the proxy-core end-to-end tests (tests/e2e/test_core_*.py).

- `RecordingEmulator`: the demo's emulator, noting who each request authenticated as and which
  Impersonate-* headers it carried, so the tests can check the upstream side of the proxy.
- `ForgeableIssuer`: the demo's OIDC issuer with a key the tests hold, to forge bad tokens.
- `raw_exchange`: one hand-written HTTP/1.1 request over TLS, for headers no client library sends
  (duplicated, underscored, named in Connection) and for upgrades.
- `check_upstream_invariant`: no request of a tenant reaches the API server un-impersonated.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from tenant_proxy import pki
from tenant_proxy.demo import OIDC_AUDIENCE, OIDC_ISSUER, Demo, DemoIssuer, demo_world
from tenant_proxy.emulator.app import Emulator
from tenant_proxy.emulator.testing import client_ssl
from tenant_proxy.emulator.types import UserInfo

PROXY_USER = "tenant-proxy"
WAIT = 20.0  # seconds any single expected event may take on a loaded 2-core machine


# --- the upstream side ----------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request as the emulator received it, after authentication."""

    method: str
    path: str
    caller: str
    impersonate_users: tuple[str, ...]
    impersonate_groups: tuple[str, ...]
    odd_headers: tuple[str, ...]  # names that normalise to impersonate-*/authorization but differ
    ws_protocols: str
    forwarded_for: tuple[str, ...] = ()  # the X-Forwarded-For lines, as they arrived


def _normalised(name: str) -> str:
    return name.lower().replace("_", "-")


def _seen(user: UserInfo, request: web.Request) -> Seen:
    odd = tuple(
        name
        for name in request.headers
        if _normalised(name).startswith(("impersonate-", "authorization")) and "_" in name
    )
    return Seen(
        method=request.method,
        path=request.raw_path,
        caller=user.name,
        impersonate_users=tuple(request.headers.getall("Impersonate-User", [])),
        impersonate_groups=tuple(request.headers.getall("Impersonate-Group", [])),
        odd_headers=odd,
        ws_protocols=",".join(request.headers.getall("Sec-WebSocket-Protocol", [])),
        forwarded_for=tuple(request.headers.getall("X-Forwarded-For", [])),
    )


class RecordingEmulator(Emulator):
    """The emulator, keeping what every authenticated request looked like on arrival."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen: list[Seen] = []

    def _impersonate(self, user: UserInfo, request: web.Request) -> UserInfo:
        self.seen.append(_seen(user, request))
        return super()._impersonate(user, request)

    def seen_at(self, path_prefix: str) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith(path_prefix)]

    def open_watches(self, group: str, plural: str) -> int:
        return sum(1 for w in self.store.watchers() if w.key == (group, plural))


# Requests the proxy makes as itself: reviews, and reads of cluster-scoped objects and
# discovery for its tenancy index and filtered answers. Anything else must be impersonated.
_OWN_POSTS = re.compile(
    r"^/apis/(authentication\.k8s\.io/v1/tokenreviews|authorization\.k8s\.io/v1/subjectaccessreviews)$"
)
_OWN_GETS = re.compile(r"^/(api|apis)(/[^/]+){0,4}$")


def _is_own_call(seen: Seen) -> bool:
    path = seen.path.partition("?")[0]
    if seen.method == "POST":
        return bool(_OWN_POSTS.match(path))
    if seen.method != "GET" or not _OWN_GETS.match(path):
        return False
    # /api/v1/<res>[/<name>] or /apis/<g>/<v>/<res>[/<name>]: nothing namespaced, no subresource.
    parts = path.strip("/").split("/")
    return len(parts) <= (4 if parts[0] == "api" else 5)


def upstream_violations(seen: list[Seen]) -> list[Seen]:
    """Requests that broke the invariant: the proxy's requests carry exactly one non-empty
    Impersonate-User unless they are the proxy's own reads and reviews; no odd header names."""
    bad: list[Seen] = []
    for s in seen:
        if s.odd_headers:
            bad.append(s)
        elif s.caller != PROXY_USER:
            continue
        elif s.impersonate_users:
            if len(s.impersonate_users) != 1 or not s.impersonate_users[0].strip():
                bad.append(s)
        elif not _is_own_call(s):
            bad.append(s)
    return bad


# --- OIDC tokens the tests can forge --------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class ForgeableIssuer(DemoIssuer):
    """The demo's issuer, whose key (`key`) the tests use to forge bad tokens."""

    def claims(self, subject: str, groups: list[str], **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": OIDC_ISSUER,
            "aud": OIDC_AUDIENCE,
            "sub": subject,
            "groups": groups,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def sign(self, claims: Mapping[str, Any]) -> str:
        return jwt.encode(dict(claims), self.key, algorithm="ES256", headers={"kid": "demo"})

    def token(self, subject: str, groups: list[str], lifetime: int = 30 * 24 * 3600) -> str:
        now = int(time.time())
        return self.sign(self.claims(subject, groups, exp=now + lifetime))

    def unsigned(self, claims: Mapping[str, Any]) -> str:
        """`alg: none`, empty signature."""
        header = _b64url(orjson.dumps({"alg": "none", "typ": "JWT", "kid": "demo"}))
        return f"{header}.{_b64url(orjson.dumps(dict(claims)))}."

    def hs256_with_public_key(self, claims: Mapping[str, Any]) -> str:
        """The algorithm-confusion forgery: HMAC keyed with the issuer's public key (PEM)."""
        secret = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = _b64url(orjson.dumps({"alg": "HS256", "typ": "JWT", "kid": "demo"}))
        signing_input = f"{header}.{_b64url(orjson.dumps(dict(claims)))}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64url(mac)}"


# --- the world --------------------------------------------------------------------------------


@dataclass
class World:
    """The demo with a recording emulator and a forgeable issuer."""

    demo: Demo
    emulator: RecordingEmulator
    issuer: ForgeableIssuer
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)

    @property
    def tenant_url(self) -> str:
        assert self.demo.proxy is not None
        return self.demo.proxy.tenant_url

    @property
    def admin_url(self) -> str:
        assert self.demo.proxy is not None
        return self.demo.proxy.admin_url

    def kubeconfig(self, name: str) -> Path:
        return self.demo.dir / f"{name}.kubeconfig"

    def tls(self, user: str | None = None, groups: tuple[str, ...] = ()) -> ssl.SSLContext:
        """Trust the proxy; present a client certificate from the demo CA for `user`."""
        pair = pki.issue_client_cert(self.demo.client_ca, user, groups) if user else None
        return client_ssl(self.demo.client_ca.cert_pem, pair)

    def session(
        self, user: str | None = None, groups: tuple[str, ...] = (), *, admin: bool = False
    ) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(ssl=self.tls(user, groups))
        base = self.admin_url if admin else self.tenant_url
        session = aiohttp.ClientSession(base_url=base, connector=connector)
        self.sessions.append(session)
        return session


# What the demo proxy's tenancy index watches.
INFORMED = {
    ("", "namespaces"),
    ("", "nodes"),
    ("", "persistentvolumes"),
    ("storage.k8s.io", "storageclasses"),
    ("networking.k8s.io", "ingressclasses"),
    ("scheduling.k8s.io", "priorityclasses"),
    ("tenancy.tenant-proxy.io", "tenants"),
}


async def eventually(predicate: Callable[[], bool]) -> None:
    """Wait for a condition of the emulator's store, which offers no event to wait on."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), WAIT)


@asynccontextmanager
async def core_world(directory: Path) -> AsyncIterator[World]:
    """Start the demo world; on the way out, fail if any request broke the upstream invariant."""
    demo = Demo(directory)
    emulator = RecordingEmulator(seed_objects=demo_world())
    issuer = ForgeableIssuer(directory)
    demo.emulator, demo.issuer = emulator, issuer
    await demo.start()
    world = World(demo, emulator, issuer)
    # Let every informer reach its watch before the test runs: a proxy stopped while an
    # informer's request is in flight loses the cancel (test_core_errors' xfail on stop).
    await eventually(lambda: {w.key for w in emulator.store.watchers()} >= INFORMED)
    try:
        yield world
    finally:
        for session in world.sessions:
            await session.close()
        await demo.stop()
    assert upstream_violations(emulator.seen) == []


# --- hand-written HTTP/1.1 ----------------------------------------------------------------------


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return orjson.loads(self.body)


def host_port(url: str) -> tuple[str, int]:
    rest = url.split("://", 1)[1]
    host, _, port = rest.rpartition(":")
    return host, int(port)


def request_bytes(
    method: str, target: str, headers: list[tuple[str, str]], body: bytes = b""
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers)]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def parse_head(head: bytes) -> tuple[int, list[tuple[str, str]]]:
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(p.strip() for p in line.split(":", 1)) for line in lines if ":" in line]
    return int(status_line.split(" ")[1]), [(k, v) for k, v in headers]


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    out = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return out
        out += await reader.readexactly(size)
        await reader.readexactly(2)


async def read_response(reader: asyncio.StreamReader, method: str = "GET") -> RawResponse:
    """One response, framed by its headers (the connection may stay open)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status, headers = parse_head(head[:-4])
    found = RawResponse(status, headers, b"")
    length = found.header("Content-Length")
    if status in (101, 204, 304) or method == "HEAD":
        body = b""
    elif "chunked" in (found.header("Transfer-Encoding") or "").lower():
        body = await _read_chunked(reader)
    elif length is not None:
        body = await reader.readexactly(int(length))
    else:
        body = await reader.read()
    return RawResponse(status, headers, body)


async def open_tls(
    url: str, tls: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = host_port(url)
    return await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=tls, server_hostname=host), WAIT
    )


async def raw_exchange(
    url: str,
    tls: ssl.SSLContext,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes = b"",
) -> RawResponse:
    """Send one request exactly as written (plus Host), read its response."""
    reader, writer = await open_tls(url, tls)
    host, port = host_port(url)
    try:
        writer.write(request_bytes(method, target, [("Host", f"{host}:{port}"), *headers], body))
        return await asyncio.wait_for(read_response(reader, method), WAIT)
    finally:
        writer.close()


# The real server's answer to a bad bearer token (k8s-reference/authn-401-bad-token.txt).
UNAUTHORIZED = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Unauthorized",
    "reason": "Unauthorized",
    "code": 401,
}


def assert_status(body: Any, code: int, reason: str) -> None:
    """`body` is a Kubernetes Status for `code`/`reason`."""
    assert isinstance(body, dict), body
    shape = (body.get("kind"), body.get("apiVersion"), body.get("status"))
    assert shape == ("Status", "v1", "Failure"), body
    assert (body.get("code"), body.get("reason")) == (code, reason), body
