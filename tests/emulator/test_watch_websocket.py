"""Watches over WebSocket, as kube-apiserver serves them (x/net/websocket behind HandleWS).

Over real TLS with aiohttp's WebSocket client, offering what Headlamp offers
(`base64.binary.k8s.io`, plus its token as a `base64url.bearer.authorization.k8s.io.` one).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from tenant_proxy.emulator.app import Emulator
from tenant_proxy.emulator.seed import reference_world
from tenant_proxy.emulator.testing import client_ssl, user_ssl
from tenant_proxy.emulator.types import UserInfo
from tenant_proxy.emulator.watching import origin_accepted

WAIT = 10.0
ADMIN = ("admin", ("system:masters",))
ORIGIN = "https://headlamp.example"
BINARY = "base64.binary.k8s.io"
TOKEN = "watch-token"
BEARER = "base64url.bearer.authorization.k8s.io." + (
    base64.urlsafe_b64encode(TOKEN.encode()).rstrip(b"=").decode()
)
HANDSHAKE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    em = Emulator(
        seed_objects=reference_world(),
        bookmark_interval=0.2,
        static_tokens={TOKEN: UserInfo(name="token-admin", groups=("system:masters",))},
    )
    await em.start()
    try:
        yield em
    finally:
        await em.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def watchers(emulator: Emulator, plural: str) -> int:
    return sum(1 for w in emulator.store.watchers() if w.key == ("", plural))


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait for a condition of the store, which offers no event to wait on."""
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.01)


async def messages_until_closed(ws: aiohttp.ClientWebSocketResponse) -> list[aiohttp.WSMessage]:
    got: list[aiohttp.WSMessage] = []
    async with asyncio.timeout(WAIT):
        async for msg in ws:
            got.append(msg)
    return got


async def http_lines(emulator: Emulator, session: aiohttp.ClientSession, path: str) -> list[bytes]:
    async with session.get(emulator.url + path, ssl=user_ssl(emulator, *ADMIN)) as resp:
        assert resp.status == 200
        body = await asyncio.wait_for(resp.read(), WAIT)
    return body.splitlines(keepends=True)


async def test_each_event_is_one_text_message_holding_its_http_line_then_a_normal_close(
    emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    path = "/api/v1/namespaces?watch=1&timeoutSeconds=1"
    async with session.ws_connect(
        emulator.url + path,
        ssl=user_ssl(emulator, *ADMIN),
        protocols=(BINARY,),
        origin=ORIGIN,
    ) as ws:
        got = await messages_until_closed(ws)
        assert ws.close_code == aiohttp.WSCloseCode.OK
    assert {m.type for m in got} == {aiohttp.WSMsgType.TEXT}
    expected = await http_lines(emulator, session, path)
    # Not base64, whatever the subprotocol's name: the bytes of each line, newline included.
    assert [m.data.encode() for m in got] == expected
    assert len(expected) == len(emulator.store.list_objects("", "namespaces", None))


@pytest.mark.parametrize(
    ("offered", "echoed"),
    [
        ((BINARY,), BINARY),
        (("binary.k8s.io",), "binary.k8s.io"),
        (("any.name.at.all",), "any.name.at.all"),
        ((), None),
    ],
    ids=["base64-binary", "binary", "any-name", "none"],
)
async def test_the_one_subprotocol_offered_is_echoed_whatever_it_is(
    emulator: Emulator, session: aiohttp.ClientSession, offered: tuple[str, ...], echoed: str | None
) -> None:
    async with session.ws_connect(
        emulator.url + "/api/v1/nodes?watch=1",
        ssl=user_ssl(emulator, *ADMIN),
        protocols=offered,
        origin=ORIGIN,
    ) as ws:
        assert ws.protocol == echoed
        first = await asyncio.wait_for(ws.receive(), WAIT)
        assert orjson.loads(first.data)["type"] == "ADDED"


async def test_a_bearer_subprotocol_authenticates_and_is_never_echoed(
    emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(
        emulator.url + "/api/v1/nodes?watch=1",
        ssl=client_ssl(emulator.ca_pem),
        protocols=(BINARY, BEARER),
        origin=ORIGIN,
    ) as ws:
        assert ws.protocol == BINARY
        first = await asyncio.wait_for(ws.receive(), WAIT)
        assert orjson.loads(first.data)["object"]["kind"] == "Node"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, 403),
        ({"Origin": "null"}, 403),
        ({"Origin": ORIGIN, "Sec-WebSocket-Protocol": f"{BINARY}, binary.k8s.io"}, 400),
        ({"Origin": ORIGIN, "Sec-WebSocket-Version": "8"}, 400),
    ],
    ids=["no-origin", "null-origin", "two-subprotocols", "old-version"],
)
async def test_handshakes_x_net_websocket_refuses_get_a_bare_status_and_a_closed_connection(
    emulator: Emulator, session: aiohttp.ClientSession, headers: dict[str, str], code: int
) -> None:
    async with session.get(
        emulator.url + "/api/v1/namespaces?watch=1",
        ssl=user_ssl(emulator, *ADMIN),
        headers={**HANDSHAKE, **headers},
    ) as resp:
        assert resp.status == code
        assert await resp.read() == b""
        assert resp.headers["Connection"] == "close"
    await eventually(lambda: watchers(emulator, "namespaces") == 0)


async def test_what_comes_before_the_handshake_is_a_plain_status(
    emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    # RBAC (and every other check of the request) decides before any upgrade.
    async with session.get(
        emulator.url + "/api/v1/nodes?watch=1",
        ssl=user_ssl(emulator, "alice", ("tenant-a-devs",)),
        headers={**HANDSHAKE, "Origin": ORIGIN},
    ) as resp:
        assert resp.status == 403
        assert (await resp.json())["reason"] == "Forbidden"


async def test_live_events_and_bookmarks_arrive_as_messages(
    emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    rv = emulator.store.resource_version
    async with session.ws_connect(
        emulator.url + f"/api/v1/nodes?watch=1&resourceVersion={rv}&allowWatchBookmarks=true",
        ssl=user_ssl(emulator, *ADMIN),
        protocols=(BINARY,),
        origin=ORIGIN,
    ) as ws:
        await emulator.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n-ws"}})
        added = await event_until(ws, lambda e: e["type"] != "BOOKMARK")
        bookmark = await event_until(ws, lambda e: e["type"] == "BOOKMARK")
    assert (added["type"], added["object"]["metadata"]["name"]) == ("ADDED", "n-ws")
    assert bookmark["object"]["kind"] == "Node"
    assert int(bookmark["object"]["metadata"]["resourceVersion"]) >= int(
        added["object"]["metadata"]["resourceVersion"]
    )


async def next_event(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), WAIT)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    event: dict[str, Any] = orjson.loads(msg.data)
    return event


async def event_until(
    ws: aiohttp.ClientWebSocketResponse, predicate: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    while not predicate(event := await next_event(ws)):
        pass
    return event


async def test_a_client_closing_the_socket_ends_the_watch_on_the_server(
    emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    ws = await session.ws_connect(
        emulator.url + "/api/v1/namespaces?watch=1",
        ssl=user_ssl(emulator, *ADMIN),
        protocols=(BINARY,),
        origin=ORIGIN,
    )
    await next_event(ws)
    assert watchers(emulator, "namespaces") == 1
    await ws.close()
    await eventually(lambda: watchers(emulator, "namespaces") == 0)


async def test_a_compacted_resource_version_is_one_error_message_then_a_normal_close(
    emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    emulator.compact()
    async with session.ws_connect(
        emulator.url + "/api/v1/namespaces?watch=1&resourceVersion=2",
        ssl=user_ssl(emulator, *ADMIN),
        origin=ORIGIN,
    ) as ws:
        got = await messages_until_closed(ws)
        assert ws.close_code == aiohttp.WSCloseCode.OK
    (error,) = [orjson.loads(m.data) for m in got]
    assert error["type"] == "ERROR"
    assert (error["object"]["code"], error["object"]["reason"]) == (410, "Expired")


async def test_a_restarting_server_drops_the_socket_without_a_close_frame(
    emulator: Emulator, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(
        emulator.url + "/api/v1/namespaces?watch=1",
        ssl=user_ssl(emulator, *ADMIN),
        origin=ORIGIN,
    ) as ws:
        await next_event(ws)
        emulator.cut_watches()
        await messages_until_closed(ws)
        assert ws.close_code == aiohttp.WSCloseCode.ABNORMAL_CLOSURE


# --- pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        ("https://headlamp.example", True),
        ("http://localhost:4466", True),
        ("/relative", True),
        ("*", True),
        ("chrome-extension:abc", True),
        ("", False),
        ("null", False),
        ("headlamp.example", False),
        ("1http://x", False),
        ("http://x\x01", False),
    ],
)
def test_origin_is_checked_as_url_parse_request_uri_reads_it(origin: str, accepted: bool) -> None:
    assert origin_accepted(origin) is accepted
