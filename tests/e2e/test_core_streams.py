"""Streams through the proxy: exec, logs, port-forward upgrades, watches, and clients that leave.

Upgrades are spliced only after authentication and only once the API server answered 101; any
other answer is relayed and the client connection closed (CVE-2018-1002105).
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import psutil
import pytest
from core_support import (
    WAIT,
    World,
    assert_status,
    core_world,
    eventually,
    host_port,
    open_tls,
    raw_exchange,
    read_response,
    request_bytes,
)
from e2e_kubectl import kubectl, kubectl_stream
from kube_objects import namespace

from tenant_proxy.emulator import exec_channels as streams
from tenant_proxy.emulator.testing import client_ssl

pytestmark = [pytest.mark.e2e]

V5 = "v5.channel.k8s.io"
ECHO_POD = """
apiVersion: v1
kind: Pod
metadata: {{name: echo, namespace: {namespace}}}
spec:
  containers: [{{name: echo, image: registry.invalid/echo}}]
"""


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with core_world(tmp_path) as w:
        yield w


async def create_pod(world: World, namespace: str) -> None:
    """An echo pod, created in-process as the cluster admin would."""
    await world.emulator.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "echo", "namespace": namespace},
            "spec": {"containers": [{"name": "echo", "image": "registry.invalid/echo"}]},
        }
    )


# --- exec ----------------------------------------------------------------------------------


@pytest.mark.kubectl
async def test_kubectl_exec_reaches_the_echo_container_as_the_caller(world: World) -> None:
    alice = world.kubeconfig("alice")
    made = await kubectl(alice, "create", "-f", "-", stdin=ECHO_POD.format(namespace="team-a-dev"))
    assert made.code == 0, made.err
    said = await kubectl(alice, "exec", "echo", "-n", "team-a-dev", "--", "echo", "hello", "proxy")
    assert (said.code, said.out) == (0, "hello proxy\n"), said.err
    piped = await kubectl(
        alice, "exec", "-i", "echo", "-n", "team-a-dev", "--", "cat", stdin="line one\nline two\n"
    )
    assert (piped.code, piped.out) == (0, "line one\nline two\n"), piped.err
    failed = await kubectl(alice, "exec", "echo", "-n", "team-a-dev", "--", "false")
    assert failed.code == 1, failed.err
    upgrades = world.emulator.seen_at("/api/v1/namespaces/team-a-dev/pods/echo/exec")
    assert upgrades
    assert {s.impersonate_users for s in upgrades} == {("alice",)}


@pytest.mark.kubectl
async def test_kubectl_exec_into_a_foreign_namespace_is_forbidden(world: World) -> None:
    await create_pod(world, "team-b-dev")
    result = await kubectl(
        world.kubeconfig("alice"), "exec", "echo", "-n", "team-b-dev", "--", "echo", "hi"
    )
    assert result.code != 0
    assert 'User "alice" cannot get resource "pods"' in result.err
    assert "hi" not in result.out


async def test_websocket_bearer_subprotocol_authenticates_exec_and_is_not_forwarded(
    world: World,
) -> None:
    await create_pod(world, "team-c-dev")
    token = world.issuer.sign(world.issuer.claims("carol", ["tenant-c-devs"]))
    bearer = "base64url.bearer.authorization.k8s.io." + (
        base64.urlsafe_b64encode(token.encode()).rstrip(b"=").decode()
    )
    url = (
        f"{world.tenant_url}/api/v1/namespaces/team-c-dev/pods/echo/exec"
        "?command=echo&command=over-websocket&stdout=true&stderr=true"
    )
    tls = client_ssl(world.demo.client_ca.cert_pem)
    frames: list[bytes] = []
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as session,
        session.ws_connect(
            url, protocols=(bearer, V5), timeout=aiohttp.ClientWSTimeout(WAIT)
        ) as ws,
    ):
        assert ws.protocol == V5
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                frames.append(msg.data)
    assert bytes([streams.STDOUT]) + b"over-websocket\n" in frames
    assert any(f[:1] == bytes([streams.ERROR]) and b'"Success"' in f for f in frames)
    (seen,) = world.emulator.seen_at("/api/v1/namespaces/team-c-dev/pods/echo/exec")
    assert seen.impersonate_users == ("oidc:carol",)
    assert "bearer" not in seen.ws_protocols
    assert V5 in seen.ws_protocols


# --- logs ----------------------------------------------------------------------------------


@pytest.mark.kubectl
async def test_kubectl_logs_and_logs_follow_stream_through_the_proxy(world: World) -> None:
    book = world.emulator.logs
    await create_pod(world, "team-a-dev")
    alice = world.kubeconfig("alice")
    shown = await kubectl(alice, "logs", "echo", "-n", "team-a-dev")
    assert (shown.code, shown.out) == (0, "hello from echo\n"), shown.err
    async with kubectl_stream(alice, "logs", "-f", "echo", "-n", "team-a-dev") as follow:
        await follow.until(lambda line: line == "hello from echo")
        book.append_log("team-a-dev", "echo", "first appended line")
        await follow.until(lambda line: line == "first appended line")
        book.append_log("team-a-dev", "echo", "second appended line")
        await follow.until(lambda line: line == "second appended line")
        book.close("team-a-dev", "echo")
        assert await asyncio.wait_for(follow.proc.wait(), WAIT) == 0


# --- raw upgrades ----------------------------------------------------------------------------


def upgrade_request(target: str, url: str, extra: list[tuple[str, str]]) -> bytes:
    host, port = host_port(url)
    headers = [
        ("Host", f"{host}:{port}"),
        ("Connection", "Upgrade"),
        ("Upgrade", "SPDY/3.1"),
        ("X-Stream-Protocol-Version", "portforward.k8s.io"),
        *extra,
    ]
    return request_bytes("POST", target, headers)


PORTFORWARD = "/api/v1/namespaces/team-a-dev/pods/echo/portforward"
# The emulator echoes the raw bytes of a SPDY exec (its port-forward speaks SPDY itself: see
# tests/e2e/test_demo_portforward.py): what a splice must carry, byte for byte.
SPDY_EXEC = "/api/v1/namespaces/team-a-dev/pods/echo/exec?command=cat&stdin=true"


async def test_spdy_upgrade_is_spliced_both_ways(world: World) -> None:
    await create_pod(world, "team-a-dev")
    reader, writer = await open_tls(world.tenant_url, world.tls("alice", ("tenant-a-devs",)))
    try:
        writer.write(upgrade_request(SPDY_EXEC, world.tenant_url, []))
        head = await asyncio.wait_for(read_response(reader), WAIT)
        assert head.status == 101
        assert (head.header("Upgrade") or "").lower() == "spdy/3.1"
        for payload in (b"first bytes \x00\x01\x02", b"x" * 200_000, b"last"):
            writer.write(payload)
            echoed = await asyncio.wait_for(reader.readexactly(len(payload)), WAIT)
            assert echoed == payload
    finally:
        writer.close()
    (seen,) = world.emulator.seen_at(SPDY_EXEC)
    assert seen.impersonate_users == ("alice",)


@pytest.mark.parametrize(
    "credential",
    [
        [("Authorization", "Bearer not-a-real-token")],
        [("Authorization", "Bearer ")],
        [("Authorization", "Bearer"), ("Impersonate-User", "admin")],
    ],
    ids=["garbage-token", "empty-token", "empty-token-with-impersonation"],
)
async def test_upgrade_with_bad_or_empty_token_is_refused_before_upgrading(
    world: World, credential: list[tuple[str, str]]
) -> None:
    await create_pod(world, "team-a-dev")
    reader, writer = await open_tls(world.tenant_url, client_ssl(world.demo.client_ca.cert_pem))
    try:
        writer.write(upgrade_request(PORTFORWARD, world.tenant_url, credential))
        resp = await asyncio.wait_for(read_response(reader), WAIT)
        # Nothing was spliced: what is written next is read as HTTP, never echoed.
        writer.write(b"not echoed\r\n\r\n")
        rest = await asyncio.wait_for(reader.read(), WAIT)
    finally:
        writer.close()
    assert resp.status == 401
    assert_status(resp.json(), 401, "Unauthorized")
    assert rest == b"" or rest.startswith(b"HTTP/1."), rest
    assert world.emulator.seen_at(PORTFORWARD) == []


async def test_websocket_upgrade_with_bad_bearer_subprotocol_is_refused(world: World) -> None:
    await create_pod(world, "team-a-dev")
    garbage = base64.urlsafe_b64encode(b"garbage").rstrip(b"=").decode()
    resp = await raw_exchange(
        world.tenant_url,
        client_ssl(world.demo.client_ca.cert_pem),
        "GET",
        "/api/v1/namespaces/team-a-dev/pods/echo/exec?command=echo&command=x&stdout=true",
        [
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", base64.b64encode(os.urandom(16)).decode()),
            ("Sec-WebSocket-Protocol", f"base64url.bearer.authorization.k8s.io.{garbage}, {V5}"),
        ],
    )
    assert resp.status == 401
    assert_status(resp.json(), 401, "Unauthorized")
    assert world.emulator.seen_at("/api/v1/namespaces/team-a-dev/pods/echo/exec") == []


async def test_upgrade_the_api_server_refuses_is_relayed_and_the_connection_closed(
    world: World,
) -> None:
    await create_pod(world, "team-b-dev")
    foreign = "/api/v1/namespaces/team-b-dev/pods/echo/portforward"
    reader, writer = await open_tls(world.tenant_url, world.tls("alice", ("tenant-a-devs",)))
    try:
        writer.write(upgrade_request(foreign, world.tenant_url, []))
        resp = await asyncio.wait_for(read_response(reader), WAIT)
        assert await asyncio.wait_for(reader.read(), WAIT) == b""
    finally:
        writer.close()
    assert resp.status == 403
    assert_status(resp.json(), 403, "Forbidden")
    assert 'User "alice" cannot create resource "pods/portforward"' in resp.json()["message"]


# --- watches ---------------------------------------------------------------------------------


def first_column(line: str) -> str:
    return line.split()[0] if line.split() else ""


@pytest.mark.kubectl
async def test_kubectl_watch_shows_new_own_namespace_but_not_a_foreign_one(world: World) -> None:
    async with kubectl_stream(world.kubeconfig("alice"), "get", "namespaces", "-w") as watch:
        await watch.until(lambda line: first_column(line) == "team-a-dev")
        await watch.until(lambda line: first_column(line) == "team-a-prod")
        # kubectl lists, then watches from the list's resourceVersion: create only once its
        # watch is open in the proxy, so the creations reach it as watch events.
        assert world.demo.proxy is not None
        streams = world.demo.proxy.streams
        await eventually(lambda: len(streams) == 1)
        # Created in this order, team-b-later's event reaches the proxy first: had it leaked,
        # it would be printed before team-a-later.
        await world.emulator.create(namespace("team-b-later", "team-b"))
        await world.emulator.create(namespace("team-a-later", "team-a"))
        await watch.until(lambda line: first_column(line) == "team-a-later")
    shown = {first_column(line) for line in watch.lines}
    assert "team-b-later" not in shown
    assert shown <= {"NAME", "team-a-dev", "team-a-prod", "team-a-later"}


async def test_watch_from_a_list_resource_version_replays_own_new_namespace(world: World) -> None:
    session = world.session("alice", ("tenant-a-devs",))
    async with session.get("/api/v1/namespaces") as resp:
        listed = await resp.json()
    await world.emulator.create(namespace("team-b-later", "team-b"))
    await world.emulator.create(namespace("team-a-later", "team-a"))
    rv = listed["metadata"]["resourceVersion"]
    async with session.get(f"/api/v1/namespaces?watch=1&resourceVersion={rv}") as resp:
        line = await asyncio.wait_for(resp.content.readline(), WAIT)
    event = orjson.loads(line)
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "team-a-later")


@pytest.mark.parametrize(
    ("path", "resource", "informers", "upstream_per_watch"),
    [
        ("/api/v1/namespaces/team-a-dev/pods?watch=true", "pods", 0, 1),
        ("/api/v1/namespaces?watch=true", "namespaces", 1, 0),
    ],
    ids=["pass-through", "filtered"],
)
async def test_client_leaving_mid_watch_ends_what_it_held(
    world: World, path: str, resource: str, informers: int, upstream_per_watch: int
) -> None:
    """A pass-through watch holds an upstream watch, which the client's leaving closes; a
    filtered one is served from the proxy's cache and holds none, only its own stream."""
    # The proxy's own informer may open its watch just after startup: count from there.
    await eventually(lambda: world.emulator.open_watches("", resource) == informers)
    assert world.demo.proxy is not None
    streams = world.demo.proxy.streams
    reader, writer = await open_tls(world.tenant_url, world.tls("alice", ("tenant-a-devs",)))
    host, port = host_port(world.tenant_url)
    writer.write(request_bytes("GET", path, [("Host", f"{host}:{port}")]))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    assert head.startswith(b"HTTP/1.1 200")
    await eventually(
        lambda: world.emulator.open_watches("", resource) == informers + upstream_per_watch
    )
    await eventually(lambda: len(streams) == 1)
    writer.transport.abort()
    await eventually(lambda: len(streams) == 0)
    assert world.emulator.open_watches("", resource) == informers


class ChunkedLines:
    """Lines of a chunked HTTP body, however the chunks cut them."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader, self.buffer = reader, b""

    async def next(self) -> bytes:
        while b"\n" not in self.buffer:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            self.buffer += await self.reader.readexactly(size + 2)
            self.buffer = self.buffer[:-2]
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line


async def test_pass_through_watch_delivers_each_event_as_it_happens(world: World) -> None:
    reader, writer = await open_tls(world.tenant_url, world.tls("alice", ("tenant-a-devs",)))
    host, port = host_port(world.tenant_url)
    target = "/api/v1/namespaces/team-a-dev/pods?watch=true"
    try:
        writer.write(request_bytes("GET", target, [("Host", f"{host}:{port}")]))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert head.startswith(b"HTTP/1.1 200")
        lines = ChunkedLines(reader)
        for name in ("first", "second"):
            # Each event must arrive before the next object exists: nothing is held back.
            await world.emulator.create(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "namespace": "team-a-dev"},
                    "spec": {"containers": [{"name": "c", "image": "registry.invalid/c"}]},
                }
            )
            event = orjson.loads(await asyncio.wait_for(lines.next(), WAIT))
            assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", name)
    finally:
        writer.close()
    (seen,) = world.emulator.seen_at(target)
    assert seen.impersonate_users == ("alice",)


async def bytes_accepted_until_blocked(writer: asyncio.StreamWriter, limit: int) -> int:
    """Write until a drain blocks for 2 s (nothing moves) or `limit` bytes went out."""
    chunk, sent = b"z" * (256 * 1024), 0
    while sent < limit:
        writer.write(chunk)
        try:
            await asyncio.wait_for(writer.drain(), 2.0)
        except TimeoutError:
            return sent
        sent += len(chunk)
    return sent


async def test_a_spliced_peer_that_never_reads_cannot_make_the_proxy_buffer(world: World) -> None:
    """Back-pressure through the splice: when the client stops reading the echo, the proxy stops
    reading from upstream, the upstream echo stops reading the client, and the client's writes
    block. What the kernel holds in socket buffers along the four hops is not the proxy's (with
    tcp_rmem up to 32 MiB it can reach tens of MiB, so bytes accepted prove little); what the
    process holds is: it must stay within the proxy's 1 MiB queues and some slack, not grow with
    what the client pushes."""
    await create_pod(world, "team-a-dev")
    reader, writer = await open_tls(world.tenant_url, world.tls("alice", ("tenant-a-devs",)))
    try:
        writer.write(upgrade_request(SPDY_EXEC, world.tenant_url, []))
        assert (await asyncio.wait_for(read_response(reader), WAIT)).status == 101
        before = psutil.Process().memory_info().rss
        sent = await bytes_accepted_until_blocked(writer, limit=100 * 1024 * 1024)
        grown = psutil.Process().memory_info().rss - before
        assert sent < 100 * 1024 * 1024, "the client's writes never blocked"
        assert grown < 24 * 1024 * 1024, f"the process grew {grown} bytes for {sent} pushed"
    finally:
        writer.transport.abort()
