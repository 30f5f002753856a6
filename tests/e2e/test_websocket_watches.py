"""Watches over WebSocket through the proxy, as a browser dashboard (Headlamp) opens them.

Headlamp offers `base64.binary.k8s.io`, plus `base64url.bearer.authorization.k8s.io.<token>`
when it holds a token, and parses each message as one JSON event. A filtered watch gets its 101
from the proxy itself (the upstream watch stays plain HTTP, read by the proxy); anything else
is the API server's own WebSocket, spliced.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from cluster import Cluster
from core_support import World, core_world, eventually
from watching import TABLE, is_, name_of, tls_for

from tenant_proxy.config import Settings
from tenant_proxy.demo import Demo
from tenant_proxy.emulator.testing import client_ssl

pytestmark = pytest.mark.e2e

WAIT = 20.0
ORIGIN = "https://headlamp.example"
BINARY = "base64.binary.k8s.io"
NS = ("v1", "Namespace")
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace"}
ALICE = ("alice", ["tenant-a-devs"])
BOB = ("bob", ["tenant-b-devs"])


def bearer_protocol(token: str) -> str:
    encoded = base64.urlsafe_b64encode(token.encode()).rstrip(b"=").decode()
    return f"base64url.bearer.authorization.k8s.io.{encoded}"


class SocketWatch:
    """An open WebSocket watch; each message must be exactly one JSON event line."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def next(self, timeout: float = WAIT) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            raise EOFError(f"the socket closed ({self.ws.close_code})")
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        assert msg.data.endswith("\n"), msg.data
        assert msg.data.count("\n") == 1, msg.data
        event: dict[str, Any] = orjson.loads(msg.data)
        self.events.append(event)
        return event

    async def until(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        async with asyncio.timeout(WAIT):
            while not predicate(event := await self.next()):
                pass
        return event

    async def initial(self, count: int) -> list[dict[str, Any]]:
        return [await self.next() for _ in range(count)]

    async def closed(self) -> int | None:
        """Read to the end; the close code the server sent."""
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    await self.next()
        except EOFError:
            return self.ws.close_code


def connect(
    session: aiohttp.ClientSession,
    url: str,
    *,
    protocols: tuple[str, ...] = (BINARY,),
    origin: str | None = ORIGIN,
    headers: dict[str, str] | None = None,
) -> Any:
    return session.ws_connect(
        url,
        protocols=protocols,
        origin=origin,
        headers=headers,
        timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=WAIT),
    )


@pytest.fixture
async def alice_session(demo: Demo) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(ssl=tls_for(demo, *ALICE))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


def tenant(demo: Demo, path: str) -> str:
    assert demo.proxy is not None
    return demo.proxy.tenant_url + path


# --- filtered: the proxy's own 101 ---------------------------------------------------------


@pytest.mark.parametrize("accept", [None, TABLE], ids=["json", "table"])
async def test_alice_sees_only_team_a_namespaces_one_text_message_per_event(
    demo: Demo, alice_session: aiohttp.ClientSession, accept: str | None
) -> None:
    headers = {"Accept": accept} if accept else None
    url = tenant(demo, "/api/v1/namespaces?watch=1")
    async with connect(alice_session, url, headers=headers) as ws:
        assert ws.protocol == BINARY
        events = await SocketWatch(ws).initial(2)
    assert {name_of(e) for e in events} == {"team-a-dev", "team-a-prod"}
    assert {e["type"] for e in events} == {"ADDED"}
    if accept == TABLE:
        assert events[0]["object"]["columnDefinitions"]


async def test_relabelling_moves_namespaces_between_sockets_and_nothing_else_leaks(
    demo: Demo, cluster: Cluster
) -> None:
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls_for(demo, *ALICE))) as a,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls_for(demo, *BOB))) as b,
        connect(a, tenant(demo, "/api/v1/namespaces?watch=1")) as ws_a,
        connect(b, tenant(demo, "/api/v1/namespaces?watch=1")) as ws_b,
    ):
        alice, bob = SocketWatch(ws_a), SocketWatch(ws_b)
        await alice.initial(2)
        await bob.initial(1)
        await cluster.create(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ws-x"}}
        )
        await cluster.patch(
            *NS, "ws-x", {"metadata": {"labels": {"tenant-proxy.io/tenant": "team-a"}}}
        )
        await alice.until(is_("ADDED", "ws-x"))
        await cluster.patch(
            *NS, "ws-x", {"metadata": {"labels": {"tenant-proxy.io/tenant": "team-b"}}}
        )
        await alice.until(is_("DELETED", "ws-x"))
        await bob.until(is_("ADDED", "ws-x"))
        await cluster.patch(
            *NS, "team-b-dev", {"metadata": {"annotations": {"touched": "by-test"}}}
        )
        await bob.until(is_("MODIFIED", "team-b-dev"))
        # A later change of alice's own proves her stream carried on past bob's change.
        await cluster.patch(
            *NS, "team-a-dev", {"metadata": {"annotations": {"touched": "by-test"}}}
        )
        await alice.until(is_("MODIFIED", "team-a-dev"))
    seen = {name_of(e) for e in alice.events if e["type"] != "BOOKMARK"}
    assert seen == {"team-a-dev", "team-a-prod", "ws-x"}


async def test_bookmarks_reach_the_socket(demo: Demo, alice_session: aiohttp.ClientSession) -> None:
    url = tenant(demo, "/api/v1/namespaces?watch=1&allowWatchBookmarks=true")
    async with connect(alice_session, url) as ws:
        bookmark = await SocketWatch(ws).until(lambda e: e["type"] == "BOOKMARK")
    assert set(bookmark["object"]) >= {"kind", "apiVersion", "metadata"}


async def test_the_api_servers_end_of_stream_is_a_normal_close(
    demo: Demo, alice_session: aiohttp.ClientSession
) -> None:
    url = tenant(demo, "/api/v1/namespaces?watch=1&timeoutSeconds=1")
    async with connect(alice_session, url) as ws:
        watch = SocketWatch(ws)
        assert await watch.closed() == aiohttp.WSCloseCode.OK
    assert {name_of(e) for e in watch.events} == {"team-a-dev", "team-a-prod"}


@pytest.mark.parametrize(
    ("origin", "protocols", "code"),
    [(None, (BINARY,), 403), ("null", (BINARY,), 403), (ORIGIN, (BINARY, "binary.k8s.io"), 400)],
    ids=["no-origin", "null-origin", "two-subprotocols"],
)
async def test_handshakes_the_api_server_refuses_are_refused_alike(
    demo: Demo,
    alice_session: aiohttp.ClientSession,
    origin: str | None,
    protocols: tuple[str, ...],
    code: int,
) -> None:
    url = tenant(demo, "/api/v1/namespaces?watch=1")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await connect(alice_session, url, protocols=protocols, origin=origin)
    assert refused.value.status == code


# --- the bearer subprotocol and the upstream side (the emulator's records) ------------------


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with core_world(tmp_path) as w:
        yield w


@pytest.mark.emulator_only
async def test_a_bearer_subprotocol_authenticates_and_never_travels_upstream(
    world: World,
) -> None:
    token = world.issuer.token("carol", ["tenant-c-devs"])
    protocols = (BINARY, bearer_protocol(token))
    tls = client_ssl(world.demo.client_ca.cert_pem)
    before = len(world.emulator.seen)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as session:
        filtered = world.tenant_url + "/api/v1/namespaces?watch=1"
        async with connect(session, filtered, protocols=protocols) as ws:
            assert ws.protocol == BINARY
            (only,) = await SocketWatch(ws).initial(1)
            assert name_of(only) == "team-c-dev"
        spliced = world.tenant_url + "/api/v1/namespaces/team-c-dev/configmaps?watch=1"
        async with connect(session, spliced, protocols=protocols) as ws:
            assert ws.protocol == BINARY
            await world.emulator.create(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "via-socket", "namespace": "team-c-dev"},
                }
            )
            await SocketWatch(ws).until(is_("ADDED", "via-socket"))
    seen = world.emulator.seen[before:]
    # The filtered watch is served from the proxy's cache: nothing of it goes upstream.
    assert [s for s in seen if s.path == "/api/v1/namespaces?watch=1"] == []
    assert all(s.ws_protocols in ("", BINARY) for s in seen)
    (upstream_spliced,) = [s for s in seen if s.path.startswith("/api/v1/namespaces/team-c-dev/")]
    assert upstream_spliced.impersonate_users == ("oidc:carol",)
    assert upstream_spliced.ws_protocols == BINARY


@pytest.mark.emulator_only
async def test_closing_the_socket_ends_the_watch_and_opens_nothing_upstream(world: World) -> None:
    await eventually(lambda: world.emulator.open_watches("", "namespaces") == 1)  # the informer
    assert world.demo.proxy is not None
    streams = world.demo.proxy.streams
    session = world.session("alice", ("tenant-a-devs",))
    async with connect(session, world.tenant_url + "/api/v1/namespaces?watch=1") as ws:
        await SocketWatch(ws).initial(2)
        assert len(streams) == 1
        assert world.emulator.open_watches("", "namespaces") == 1  # served from the cache
    await eventually(lambda: len(streams) == 0)
    assert world.emulator.open_watches("", "namespaces") == 1


@pytest.mark.emulator_only
async def test_a_refused_handshake_costs_no_upstream_watch(world: World) -> None:
    await eventually(lambda: world.emulator.open_watches("", "namespaces") == 1)
    asked_before = len(world.emulator.seen_at("/api/v1/namespaces"))
    session = world.session("alice", ("tenant-a-devs",))
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await connect(session, world.tenant_url + "/api/v1/namespaces?watch=1", origin=None)
    # Refused before anything was asked upstream (only the index's own watch is open).
    assert len(world.emulator.seen_at("/api/v1/namespaces")) == asked_before
    assert world.emulator.open_watches("", "namespaces") == 1


# --- pass-through: the API server's own WebSocket, spliced --------------------------------


async def test_admin_listener_websocket_watch_is_the_api_servers_unfiltered(
    demo: Demo, cluster: Cluster
) -> None:
    assert demo.proxy is not None
    url = demo.proxy.admin_url + "/api/v1/namespaces?watch=1&timeoutSeconds=1"
    tls = tls_for(demo, "admin", ["system:masters"])
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as session,
        connect(session, url) as ws,
    ):
        assert ws.protocol == BINARY
        watch = SocketWatch(ws)
        assert await watch.closed() == aiohttp.WSCloseCode.OK
    names = {name_of(e) for e in watch.events}
    assert names == set(await cluster.names(*NS))
    assert {"team-a-dev", "team-b-dev"} <= names


async def test_a_websocket_watch_of_an_unfiltered_resource_is_spliced(
    demo: Demo, alice_session: aiohttp.ClientSession, cluster: Cluster
) -> None:
    url = tenant(demo, "/api/v1/namespaces/team-a-dev/configmaps?watch=1")
    async with connect(alice_session, url) as ws:
        assert ws.protocol == BINARY
        await cluster.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "spliced", "namespace": "team-a-dev"},
            }
        )
        added = await SocketWatch(ws).until(is_("ADDED", "spliced"))
    assert added["object"]["kind"] == "ConfigMap"


async def test_a_foreign_namespace_is_refused_before_any_upgrade(
    demo: Demo, alice_session: aiohttp.ClientSession
) -> None:
    url = tenant(demo, "/api/v1/namespaces/team-b-dev/configmaps?watch=1")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await connect(alice_session, url)
    assert refused.value.status == 403


# --- drain and slow clients -------------------------------------------------------------------


async def test_drain_ends_a_websocket_watch_with_a_close_frame(
    demo: Demo, alice_session: aiohttp.ClientSession
) -> None:
    proxy = demo.proxy
    assert proxy is not None
    async with connect(alice_session, tenant(demo, "/api/v1/namespaces?watch=1")) as ws:
        watch = SocketWatch(ws)
        await watch.initial(2)
        stopping = asyncio.ensure_future(proxy.stop())
        assert await watch.closed() == aiohttp.WSCloseCode.OK
    await asyncio.wait_for(stopping, WAIT)
    demo.proxy = None  # stopped here; the fixture then stops only the upstream


class TinyBufferDemo(Demo):
    """The demo with room for two events per filtered watch."""

    def settings(self, upstream: Path) -> Settings:
        settings = super().settings(upstream)
        limits = settings.limits.model_copy(
            update={"watch_buffer_events": 2, "watch_slow_client_seconds": 0.2}
        )
        return settings.model_copy(update={"limits": limits})


@pytest.mark.emulator_only
async def test_a_socket_that_is_not_read_is_cut_with_an_error_not_buffered(
    tmp_path: Path,
) -> None:
    demo = TinyBufferDemo(tmp_path)
    await demo.start()
    try:
        connector = aiohttp.TCPConnector(ssl=tls_for(demo, *ALICE))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            connect(session, tenant(demo, "/api/v1/namespaces?watch=1")) as ws,
        ):
            watch = SocketWatch(ws)
            await watch.initial(2)
            assert upstream_watches(demo) == 1  # the informer's only: served from the cache
            # Far more than socket buffers hold, while the client reads nothing (its library
            # would read ahead and buffer without bound: stop it reading the socket).
            assert ws._conn is not None
            assert ws._conn.transport is not None
            ws._conn.transport.pause_reading()
            big = "x" * (1024 * 1024)
            for i in range(24):
                await demo.emulator.patch(
                    *NS, "team-a-dev", {"metadata": {"annotations": {"big": f"{i}{big}"}}}
                )
            registry = demo.proxy.metrics.registry if demo.proxy else None
            assert registry is not None
            cut = {"reason": "too_slow"}
            await eventually(
                lambda: registry.get_sample_value("tenant_proxy_watches_cut_total", cut) == 1
            )
            ws._conn.transport.resume_reading()
            code = await watch.closed()
        events = watch.events[2:]
        assert code == aiohttp.WSCloseCode.OK
        assert events[-1]["type"] == "ERROR"
        assert (events[-1]["object"]["code"], events[-1]["object"]["reason"]) == (
            429,
            "TooManyRequests",
        )
        assert len(events) - 1 < 24  # some went, the rest were never queued
    finally:
        await demo.stop()


def upstream_watches(demo: Demo) -> int:
    return sum(1 for w in demo.emulator.store.watchers() if w.key == ("", "namespaces"))
