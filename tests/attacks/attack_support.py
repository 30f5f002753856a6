"""The world the attack suite runs against, and the checks every case makes.

One world per test session (tests/attacks/conftest.py): `tenant-proxy serve` as a subprocess
(so its RSS can be read and an attack cannot slow the test's own loop), in front of the demo's
emulator running on a thread of its own (so it keeps serving the proxy whichever event loop a
test runs on), plus two small HTTPS key servers: an OIDC issuer found by discovery whose
availability the tests switch, and an attacker's server that must never be contacted.

Every case checks, besides its own answer (`assert_refused`):
- `assert_nothing_foreign`: no name of another tenant's object in the answer, unless the
  request itself named it (a 404 or 403 echoes the name asked for, as kube-apiserver does);
- `Mark.assert_upstream_clean`: what reached the API server during the case carried no client
  credential or impersonation header, and only the impersonations the case allows;
- `probe`: bob, another tenant, gets exactly his own namespaces (the process still serves);
- for resource exhaustion, `assert_rss_returns`: the proxy's RSS is back within a bound.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import jwt
import psutil
import yaml
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from e2e.core_support import (
    ForgeableIssuer,
    RawResponse,
    RecordingEmulator,
    Seen,
    assert_status,
    host_port,
    read_response,
    request_bytes,
    upstream_violations,
)
from kube_objects import persistent_volume

from tenant_proxy import pki
from tenant_proxy.demo import OIDC_AUDIENCE, Demo, demo_world
from tenant_proxy.emulator import errors
from tenant_proxy.emulator.responses import cut_off, status_response
from tenant_proxy.emulator.testing import client_ssl
from tenant_proxy.emulator.types import UserInfo
from tenant_proxy.headers import name_key

T = TypeVar("T")

WAIT = 30.0  # seconds any single expected event may take on a loaded 2-core machine
SCRIPT = Path(sys.executable).parent / "tenant-proxy"

ALICE = ("alice", ("tenant-a-devs",))
BOB = ("bob", ("tenant-b-devs",))
# Every object of the demo world alice (team-a) does not own, by name. The names are distinct
# enough that none occurs in an answer by accident (not namespace "platform": /version has a
# field of that name; any leak of namespaces carries the others too).
FOREIGN_TO_ALICE = (
    "team-b-dev",
    "team-c-dev",
    "kube-system",
    "kube-public",
    "node-b1",
    "node-shared",
    "pv-b-data",
    "pv-c-data",
    "pv-unbound",
    "silver",
    "bronze",
    "nginx-b",
    "team-b-high",
    "system-critical-ish",
)
ALICE_NAMESPACES = {"team-a-dev", "team-a-prod"}
# Generous: CPython rarely hands memory back to the OS at once; a leak per request would be
# far above this after the repeated attacks the exhaustion cases make.
RSS_BOUND = 32 * 1024 * 1024


# --- the API server side -------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    """One request as the emulator received it (after authenticating the proxy)."""

    method: str
    path: str
    caller: str
    headers: tuple[tuple[str, str], ...]

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class PathFault:
    """The next `remaining` requests under `prefix` fail with `status`, or (`cut`) are
    answered halfway and their connection dropped."""

    prefix: str
    status: int = 500
    remaining: int = 1
    retry_after: int | None = None
    cut: bool = False


class AttackEmulator(RecordingEmulator):
    """The recording emulator, also keeping every header it received, with faults that hit
    only the requests under one path (the informers' own requests are left alone)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.arrived: list[Arrival] = []
        self.path_faults: list[PathFault] = []

    def _impersonate(self, user: UserInfo, request: web.Request) -> UserInfo:
        headers = tuple((k, v) for k, v in request.headers.items())
        self.arrived.append(Arrival(request.method, request.raw_path, user.name, headers))
        return super()._impersonate(user, request)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        for fault in self.path_faults:
            if fault.remaining > 0 and request.raw_path.startswith(fault.prefix):
                fault.remaining -= 1
                if not fault.cut:
                    return status_response(_failure(fault))
                response = await super()._handle(request)
                assert isinstance(response, web.Response)
                return await cut_off(request, response)
        return await super()._handle(request)


def _failure(fault: PathFault) -> errors.StatusError:
    if fault.status == 429:
        return errors.too_many_requests(fault.retry_after or 1)
    err = (
        errors.service_unavailable()
        if fault.status == 503
        else errors.internal_error("injected fault")
    )
    if fault.retry_after is not None:
        err.headers["Retry-After"] = str(fault.retry_after)
    return err


class UpstreamLoop:
    """An event loop on a thread of its own for the emulator and the key servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="attack-upstream")
        self._thread.daemon = True
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """From a thread that is not running a loop (fixtures)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """From a test's coroutine."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the emulator's loop: its state is only ever touched there."""

        async def wrapped() -> T:
            return fn()

        return await self.run_async(wrapped())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


# --- key servers --------------------------------------------------------------------------------


def server_tls(ca: pki.KeyPair, directory: Path, name: str) -> ssl.SSLContext:
    pair = pki.issue_server_cert(ca, ["127.0.0.1"])
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    pair.write(cert, key)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def jwk_of(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return {**public, "kid": kid, "use": "sig", "alg": "ES256"}


@dataclass
class KeyServer:
    """An HTTPS OIDC issuer: discovery document and JWKS, answering 503 while `up` is False.
    `hits` counts every request, so a server that must never be asked can be checked."""

    up: bool = True
    keys: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    def new_key(self, kid: str) -> ec.EllipticCurvePrivateKey:
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())
        return self.keys[kid]

    async def start(self, tls: ssl.SSLContext) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/{tail:.*}", self._jwks)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        assert site._server is not None
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"https://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _discovery(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        if not self.up:
            return web.Response(status=503)
        return web.json_response({"issuer": self.url, "jwks_uri": f"{self.url}/jwks"})

    async def _jwks(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        if not self.up:
            return web.Response(status=503)
        return web.json_response({"keys": [jwk_of(k, kid) for kid, k in self.keys.items()]})

    def token(self, kid: str, claims: Mapping[str, Any]) -> str:
        return jwt.encode(dict(claims), self.keys[kid], algorithm="ES256", headers={"kid": kid})


# --- the proxy process ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], log: Path) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
        line = proc.stdout.readline() if ready else b""
        if b"tenant-proxy ready" in line:
            return
        if not line and proc.poll() is not None:
            break
    raise RuntimeError(f"tenant-proxy serve did not become ready: {log.read_text()[-4000:]}")


@dataclass
class World:
    """The proxy process, its upstream and what the tests need to attack both."""

    directory: Path
    upstream: UpstreamLoop
    demo: Demo
    emulator: AttackEmulator
    issuer: ForgeableIssuer
    discovery: KeyServer
    attacker: KeyServer
    proc: subprocess.Popen[bytes]
    log: Path
    _tls: dict[tuple[str, tuple[str, ...]] | None, ssl.SSLContext] = field(default_factory=dict)
    # Where this case's connections come from: each case its own address (conftest), as each
    # attacker would be, so no case inherits the edge's pacing of an address another abused.
    client_address: str = "127.0.0.1"

    @property
    def tenant_url(self) -> str:
        address = yaml.safe_load((self.directory / "config.yaml").read_text())["listener"]
        return f"https://{address['address']}"

    def tls(self, who: tuple[str, tuple[str, ...]] | None = ALICE) -> ssl.SSLContext:
        """Trusts the proxy; presents a client certificate of the demo CA for `who`."""
        if who not in self._tls:
            pair = pki.issue_client_cert(self.demo.client_ca, who[0], who[1]) if who else None
            self._tls[who] = client_ssl(self.demo.client_ca.cert_pem, pair)
        return self._tls[who]

    def session(
        self, who: tuple[str, tuple[str, ...]] | None = ALICE, *, bystander: bool = False
    ) -> aiohttp.ClientSession:
        """A client session; a bystander's comes from another address than the attacker's
        (127.0.0.2), as another tenant's would: the edge paces an abusive address, not others."""
        local = ("127.0.0.2", 0) if bystander else (self.client_address, 0)
        connector = aiohttp.TCPConnector(ssl=self.tls(who), force_close=True, local_addr=local)
        return aiohttp.ClientSession(base_url=self.tenant_url, connector=connector)

    def rss(self) -> int:
        process = psutil.Process(self.proc.pid)
        return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])

    def mark(self) -> Mark:
        return Mark(self, len(self.emulator.arrived), len(self.emulator.seen))

    async def in_upstream(self, fn: Callable[[], T]) -> T:
        return await self.upstream.call(fn)

    @asynccontextmanager
    async def fault(self, fault: PathFault) -> AsyncIterator[PathFault]:
        """`fault` applies to the API server's answers while the block runs."""
        await self.in_upstream(lambda: self.emulator.path_faults.append(fault))
        try:
            yield fault
        finally:
            await self.in_upstream(lambda: self.emulator.path_faults.remove(fault))

    def close(self) -> None:
        if self.proc.poll() is None:
            process = psutil.Process(self.proc.pid)
            for p in [*process.children(recursive=True), process]:
                p.kill()
            self.proc.wait(30)
        self.upstream.run(self.discovery.stop())
        self.upstream.run(self.attacker.stop())
        self.upstream.run(self.demo.stop_upstream())
        self.upstream.close()


# A second PV each for team-a and team-b, so their rewritten PV lists have two pages of one (the
# names contain the first PV's, so FOREIGN_TO_ALICE covers them).
EXTRA_PVS = (("pv-a-data", "team-a-dev"), ("pv-b-data", "team-b-dev"))


def start_world(directory: Path) -> World:
    upstream = UpstreamLoop()
    demo = Demo(directory, tenant_port=free_port(), admin_port=free_port())
    seed = demo_world() + [persistent_volume(f"{pv}-2", ns, claim="data-2") for pv, ns in EXTRA_PVS]
    emulator = AttackEmulator(seed_objects=seed, metrics_server=True)
    issuer = ForgeableIssuer(directory)
    demo.emulator, demo.issuer = emulator, issuer
    upstream_kubeconfig = upstream.run(demo.start_upstream())
    key_ca = pki.new_ca("attack-key-servers")
    (directory / "key-ca.crt").write_bytes(key_ca.cert_pem)
    discovery, attacker = KeyServer(), KeyServer()
    upstream.run(discovery.start(server_tls(key_ca, directory, "discovery")))
    upstream.run(attacker.start(server_tls(key_ca, directory, "attacker")))
    doc = demo.settings(upstream_kubeconfig).model_dump(mode="json")
    doc["observability"]["metrics"] = None
    # Rewritten lists read upstream in pages of two, so paging and continue tokens are
    # exercised with the demo world's handful of objects.
    doc["limits"]["filtered_list_page"] = 2
    doc["authentication"]["oidc"].append(
        {
            "issuer_url": discovery.url,
            "audiences": [OIDC_AUDIENCE],
            # No prefix: what a claim names is the user, so `system:` claims must be refused.
            "username_prefix": "-",
            "ca_file": str(directory / "key-ca.crt"),
            "jwks_min_refetch_seconds": 0.05,
        }
    )
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump(doc))
    log = directory / "serve.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [str(SCRIPT), "serve", "--config", str(config), "--workers", "1"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    world = World(directory, upstream, demo, emulator, issuer, discovery, attacker, proc, log)
    try:
        _wait_ready(proc, log)
    except BaseException:
        world.close()
        raise
    return world


# --- the checks ---------------------------------------------------------------------------------


@dataclass
class Mark:
    """Where the emulator's records stood when a case began."""

    world: World
    arrived: int
    seen: int

    def since(self) -> list[Arrival]:
        return self.world.emulator.arrived[self.arrived :]

    def assert_upstream_clean(self, uid: bool = False, **also: Iterable[str]) -> None:
        """Nothing a client sent as credentials or impersonation reached the API server, and
        every impersonation was alice's, bob's or one named in `also` (user=groups), each with
        its own groups only (and a uid where the caller has one: ServiceAccounts)."""
        allowed = {"alice": {"tenant-a-devs"}, "bob": {"tenant-b-devs"}}
        allowed.update({user: set(groups) for user, groups in also.items()})
        assert upstream_violations([as_modern_path(s) for s in self.seen_since()]) == []
        for r in self.since():
            keys = [name_key(k) for k, _ in r.headers]
            assert "authorization" not in keys, r
            assert not [k for k in keys if k.startswith("xremote")], r
            assert not [k for k in keys if k.startswith("impersonateextra")], r
            assert uid or "impersonateuid" not in keys, r
            assert all("_" not in k for k, _ in r.headers if name_key(k).startswith("imperson"))
            users_sent = r.values("Impersonate-User")
            if not users_sent:
                continue
            assert len(users_sent) == 1, r
            assert users_sent[0] in allowed, r
            assert set(r.values("Impersonate-Group")) <= allowed[users_sent[0]], r

    def seen_since(self) -> list[Seen]:
        return self.world.emulator.seen[self.seen :]

    def paths(self) -> list[str]:
        return [r.path for r in self.since()]


def as_modern_path(seen: Seen) -> Seen:
    """`/api/v1/watch/namespaces/x` and `/api/v1/namespaces/x/` as `/api/v1/namespaces/x`: the
    proxy reads a filtered watch of the legacy path, or a name with a trailing slash (which
    kube-apiserver's requestinfo.go trims as the proxy does), as itself too; core_support's
    invariant knows only the plain form."""
    path, sep, query = seen.path.partition("?")
    path = re.sub(r"^/(api|apis/[^/]+)/([^/]+)/watch/", r"/\1/\2/", path).rstrip("/")
    return replace(seen, path=path + sep + query)


def assert_nothing_foreign(body: bytes | str, asked: str = "") -> None:
    """No name of an object alice does not own appears, but those the request named."""
    text = body if isinstance(body, str) else body.decode("utf-8", "replace")
    leaked = [n for n in FOREIGN_TO_ALICE if n in text and n not in asked]
    assert leaked == [], text[:2000]


def assert_refused(status: int, body: bytes, code: int, reason: str) -> None:
    """The answer is the Kubernetes Status `code`/`reason`."""
    assert status == code, body[:2000]
    assert_status(json.loads(body), code, reason)


# What the proxy answers to a request its HTTP parser could not read (tenant_proxy.head_errors):
# a 400 Status in words of its own, before any handler of the proxy ran.
UNREAD = re.compile(
    r"the request (line or a header field is longer than \d+ bytes|line is malformed|URL is "
    r"malformed|head is malformed|body is malformed|head is refused: .+|could not be read)"
    r"|a header field is malformed"
)


def assert_unread(status: int, body: bytes) -> None:
    """The answer is the parser's refusal: 400, a Status whose message quotes nothing sent."""
    assert status == 400, body[:2000]
    answer = json.loads(body)
    assert_status(answer, 400, "BadRequest")
    assert UNREAD.fullmatch(answer["message"]), answer


async def probe(world: World) -> None:
    """Another tenant's request is answered, and answered right."""
    async with world.session(BOB, bystander=True) as bob, bob.get("/api/v1/namespaces") as resp:
        assert resp.status == 200
        names = {item["metadata"]["name"] for item in (await resp.json())["items"]}
    assert names == {"team-b-dev"}


async def assert_rss_returns(world: World, before: int) -> None:
    after = world.rss()
    print(f"proxy RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB")
    assert after - before < RSS_BOUND, f"RSS {before >> 20} MiB -> {after >> 20} MiB"


# --- hand-written HTTP/1.1 over TLS ------------------------------------------------------------


async def open_tls(
    world: World, who: tuple[str, tuple[str, ...]] | None = ALICE
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = host_port(world.tenant_url)
    return await asyncio.wait_for(
        asyncio.open_connection(
            host,
            port,
            ssl=world.tls(who),
            server_hostname=host,
            local_addr=(world.client_address, 0),
        ),
        WAIT,
    )


async def send_raw(
    world: World,
    data: bytes,
    who: tuple[str, tuple[str, ...]] | None = ALICE,
    method: str = "GET",
    count: int = 5,
) -> list[RawResponse]:
    """Write `data` exactly as given; the responses read until the proxy closes or `count`."""
    reader, writer = await open_tls(world, who)
    responses: list[RawResponse] = []
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(WAIT):
            while len(responses) < count:
                try:
                    responses.append(await read_response(reader, method))
                except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                    break
                if (responses[-1].header("Connection") or "").lower() == "close":
                    break
    finally:
        writer.close()
    return responses


async def exchange(
    world: World,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    who: tuple[str, tuple[str, ...]] | None = ALICE,
) -> RawResponse:
    """One request exactly as written (plus Host and Connection: close)."""
    host, port = host_port(world.tenant_url)
    head = [("Host", f"{host}:{port}"), *headers, ("Connection", "close")]
    found = await send_raw(world, request_bytes(method, target, head, body), who, method)
    assert found, "the proxy closed the connection without an answer"
    return found[0]


def host_header(world: World) -> str:
    host, port = host_port(world.tenant_url)
    return f"{host}:{port}"


__all__ = [
    "ALICE",
    "ALICE_NAMESPACES",
    "BOB",
    "FOREIGN_TO_ALICE",
    "WAIT",
    "KeyServer",
    "Mark",
    "PathFault",
    "RawResponse",
    "World",
    "assert_nothing_foreign",
    "assert_refused",
    "assert_rss_returns",
    "exchange",
    "host_header",
    "open_tls",
    "probe",
    "send_raw",
    "start_world",
]
