"""Connections that hold the proxy without using it are closed, and their number is capped.

Clocks are configured short; each test waits for the proxy to close the connection with a
generous timeout and checks the metric naming why. Nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

from edge_support import GENEROUS, EdgeDemo, closed_by_peer, edge_demo, read_response

from tenant_proxy.edge_admission import ConnectionCounts
from tenant_proxy.memory_trim import MemoryTrim

CLOSED = "tenant_proxy_connections_closed_total"
REFUSED = "tenant_proxy_connections_refused_total"
OPEN = "tenant_proxy_connections_open"


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: proxy\r\n\r\n".encode()


async def test_idle_connection_is_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    async with edge_demo(tmp_path, idle_timeout_seconds=0.5) as demo:
        reader, writer = await demo.connect(demo.alice())
        writer.write(get("/api/v1/namespaces"))
        code, _ = await read_response(reader)
        assert code == 200
        assert await closed_by_peer(reader), "an idle kept-alive connection stayed open"
        assert demo.sample(CLOSED, listener="tenant", reason="idle_timeout") == 1
        writer.close()


async def test_connection_that_never_sends_a_request_is_closed(tmp_path: Path) -> None:
    async with edge_demo(tmp_path, header_timeout_seconds=0.5) as demo:
        reader, writer = await demo.connect()  # handshake done, no certificate, nothing sent
        assert await closed_by_peer(reader)
        assert demo.sample(CLOSED, listener="tenant", reason="header_timeout") == 1
        writer.close()


async def test_unfinished_request_head_is_closed_after_the_header_timeout(tmp_path: Path) -> None:
    # The idle clock is long: only the head's clock can close this one.
    async with edge_demo(tmp_path, header_timeout_seconds=0.5, idle_timeout_seconds=600) as demo:
        reader, writer = await demo.connect(demo.alice())
        writer.write(get("/version"))
        code, _ = await read_response(reader)
        assert code == 200
        writer.write(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: proxy\r\nX-Slow: ")
        assert await closed_by_peer(reader), "half a request head held the connection"
        assert demo.sample(CLOSED, listener="tenant", reason="header_timeout") == 1
        assert demo.sample(CLOSED, listener="tenant", reason="idle_timeout") == 0
        writer.close()


async def test_tcp_connection_without_a_handshake_is_closed(tmp_path: Path) -> None:
    async with edge_demo(tmp_path, tls_handshake_timeout_seconds=0.5) as demo:
        reader, writer = await asyncio.open_connection(*demo.address)
        assert await closed_by_peer(reader)
        assert demo.sample(CLOSED, listener="tenant", reason="tls_handshake_timeout") == 1
        assert demo.sample(OPEN, listener="tenant") == 0
        writer.close()


async def test_a_watch_outlives_the_clocks(tmp_path: Path) -> None:
    """A watch (a request being served) is never cut by the head or idle clocks."""
    async with edge_demo(tmp_path, header_timeout_seconds=0.5, idle_timeout_seconds=0.5) as demo:
        reader, writer = await demo.connect(demo.alice())
        writer.write(get("/api/v1/namespaces/team-a-dev/configmaps?watch=1"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GENEROUS)
        assert head.startswith(b"HTTP/1.1 200")
        # Another connection idles out: both clocks have run out for the watch's too.
        idle_reader, idle_writer = await demo.connect(demo.bob())
        assert await closed_by_peer(idle_reader)
        idle_writer.close()
        # The watch still delivers: a configmap created now reaches it.
        creator, creator_writer = await demo.connect(demo.alice())
        body = json.dumps({"metadata": {"name": "after-the-clocks"}}).encode()
        creator_writer.write(
            b"POST /api/v1/namespaces/team-a-dev/configmaps HTTP/1.1\r\nHost: proxy\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        code, _ = await read_response(creator)
        assert code == 201
        event = await asyncio.wait_for(reader.readuntil(b"after-the-clocks"), GENEROUS)
        assert b"ADDED" in event
        assert demo.sample(CLOSED, listener="tenant", reason="idle_timeout") == 0
        for w in (writer, creator_writer):
            w.close()


async def _held(demo: EdgeDemo, count: int) -> list[asyncio.StreamWriter]:
    writers = []
    for _ in range(count):
        _, writer = await demo.connect()
        writers.append(writer)
    return writers


async def test_connections_beyond_the_per_address_cap_are_refused(tmp_path: Path) -> None:
    async with edge_demo(tmp_path, max_connections_per_address=2) as demo:
        held = await _held(demo, 2)
        reader, writer = await asyncio.open_connection(*demo.address)
        assert await closed_by_peer(reader)
        assert demo.sample(REFUSED, listener="tenant", reason="address_cap") == 1
        writer.close()
        # One held connection goes: a new one is served again.
        held.pop().close()
        await asyncio.wait_for(_until_open(demo, 1), GENEROUS)
        reader, writer = await demo.connect(demo.alice())
        writer.write(get("/version"))
        code, _ = await read_response(reader)
        assert code == 200
        for w in [*held, writer]:
            w.close()


async def test_connections_beyond_the_listener_cap_are_refused(tmp_path: Path) -> None:
    async with edge_demo(tmp_path, max_connections=3, max_connections_per_address=0) as demo:
        held = await _held(demo, 3)
        assert demo.sample(OPEN, listener="tenant") == 3
        # Refused at accept, before any handshake: a plain TCP connection is closed at once.
        with socket.create_connection(demo.address, timeout=GENEROUS) as sock:
            assert await asyncio.to_thread(sock.recv, 1) == b""
        assert demo.sample(REFUSED, listener="tenant", reason="listener_cap") == 1
        for w in held:
            w.close()


async def _until_open(demo: EdgeDemo, count: int) -> None:
    while demo.sample(OPEN, listener="tenant") != count:
        await asyncio.sleep(0.01)  # polling a gauge the proxy updates on its own


def test_counts_admit_up_to_each_cap_and_release_what_they_admitted() -> None:
    counts = ConnectionCounts(max_total=3, max_per_address=2)
    assert counts.admit("a") is None
    assert counts.admit("a") is None
    assert counts.admit("a") == "address_cap"
    assert counts.admit("b") is None
    assert counts.admit("c") == "listener_cap"
    counts.release("a")
    assert counts.admit("c") is None
    assert counts.total == 3


async def test_memory_is_trimmed_once_a_crowd_of_connections_has_gone() -> None:
    trimmed: list[int] = []
    done = asyncio.Event()

    def fake_trim() -> None:
        trimmed.append(1)
        done.set()

    trim = MemoryTrim(crowd=4, trim=fake_trim)
    for total in range(1, 9):
        trim.after_admit(total)
    for total in range(7, 2, -1):
        trim.after_release(total)
    assert not done.is_set()  # 3 still open: more than a quarter of the peak of 8
    trim.after_release(2)
    trim.after_release(1)
    await asyncio.wait_for(done.wait(), GENEROUS)
    assert trimmed == [1]


async def test_too_many_header_fields_are_refused(tmp_path: Path) -> None:
    async with edge_demo(tmp_path, max_header_count=16) as demo:
        reader, writer = await demo.connect(demo.alice())
        extra = "".join(f"X-Filler-{i}: {i}\r\n" for i in range(32))
        writer.write(f"GET /version HTTP/1.1\r\nHost: proxy\r\n{extra}\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n"), GENEROUS)
        assert head.split()[1] == b"400"
        assert await closed_by_peer(reader)
        # Within the count, the same request is served.
        reader, writer = await demo.connect(demo.alice())
        writer.write(b"GET /version HTTP/1.1\r\nHost: proxy\r\nX-One: 1\r\n\r\n")
        code, _ = await read_response(reader)
        assert code == 200
        writer.close()
