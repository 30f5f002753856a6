"""The emulator's kubelet side of port-forward, driven frame by frame as client-go drives it:
an error stream then a data stream per connection, each answered by a SYN_REPLY; bytes echoed
on the data stream; a closed port reported on the error stream; pings answered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tenant_proxy.emulator import spdy
from tenant_proxy.emulator.app import Emulator
from tenant_proxy.emulator.testing import ADMIN, user_ssl

WAIT = 20.0
PATH = "/api/v1/namespaces/default/pods/web/portforward"


class Client:
    """client-go's side of one SPDY connection, over a byte transport."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.frames_in, self.frames_out = spdy.FrameReader(), spdy.FrameWriter()
        self.pending: list[spdy.Frame] = []

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def open(self, stream_id: int, kind: str, port: int, request: int) -> None:
        headers = {"streamtype": kind, "port": str(port), "requestid": str(request)}
        self.send(self.frames_out.syn_stream(stream_id, headers))

    async def frame(self) -> spdy.Frame:
        async with asyncio.timeout(WAIT):
            while not self.pending:
                chunk = await self.reader.read(65536)
                assert chunk, "the connection closed"
                self.pending += self.frames_in.feed(chunk)
        return self.pending.pop(0)

    async def data_of(self, stream_id: int, size: int) -> bytes:
        got = b""
        while len(got) < size:
            frame = await self.frame()
            if isinstance(frame, spdy.Data) and frame.stream_id == stream_id:
                got += frame.data
        return got


@pytest.fixture
async def client(emulator: Emulator) -> AsyncIterator[Client]:
    await emulator.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "containers": [{"name": "web", "image": "x", "ports": [{"containerPort": 80}]}]
            },
        }
    )
    reader, writer = await asyncio.open_connection(
        emulator.host, emulator.port, ssl=user_ssl(emulator, *ADMIN)
    )
    writer.write(
        f"POST {PATH} HTTP/1.1\r\nHost: {emulator.host}\r\nConnection: Upgrade\r\n"
        "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: portforward.k8s.io\r\n"
        "Content-Length: 0\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"X-Stream-Protocol-Version: portforward.k8s.io" in head
    try:
        yield Client(reader, writer)
    finally:
        writer.close()


async def test_each_stream_is_answered_and_bytes_come_back(client: Client) -> None:
    client.open(1, "error", 80, 0)
    assert await client.frame() == spdy.SynReply(1, {})
    client.open(3, "data", 80, 0)
    assert await client.frame() == spdy.SynReply(3, {})
    payload = bytes(range(256)) * 1000
    client.send(client.frames_out.data(3, payload))
    assert await client.data_of(3, len(payload)) == payload
    client.send(client.frames_out.ping(5))
    assert await client.frame() == spdy.Ping(5)
    # The client is done writing: the pod's side ends, then both streams are closed.
    client.send(client.frames_out.data(3, b"", fin=True))
    ends = {await client.frame(), await client.frame()}
    assert ends == {spdy.Data(3, b"", fin=True), spdy.Data(1, b"", fin=True)}


async def test_a_port_the_pod_does_not_declare_is_refused_on_the_error_stream(
    client: Client,
) -> None:
    client.open(1, "error", 9999, 7)
    client.open(3, "data", 9999, 7)
    frames = [await client.frame() for _ in range(4)]
    assert frames[:2] == [spdy.SynReply(1, {}), spdy.SynReply(3, {})]
    error, data = frames[2], frames[3]
    assert isinstance(error, spdy.Data)
    assert (error.stream_id, error.fin) == (1, True)
    assert b"localhost:9999" in error.data
    assert b"connection refused" in error.data
    assert data == spdy.Data(3, b"", fin=True)


async def test_websocket_tunnel_carries_the_same_protocol(emulator: Emulator) -> None:
    await emulator.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "containers": [{"name": "web", "image": "x", "ports": [{"containerPort": 80}]}]
            },
        }
    )
    connector = aiohttp.TCPConnector(ssl=user_ssl(emulator, *ADMIN))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.ws_connect(
            f"{emulator.url}{PATH}", protocols=("SPDY/3.1+portforward.k8s.io",)
        ) as ws,
    ):
        assert ws.protocol == "SPDY/3.1+portforward.k8s.io"
        out, inbound = spdy.FrameWriter(), spdy.FrameReader()
        await ws.send_bytes(
            out.syn_stream(1, {"streamtype": "error", "port": "80", "requestid": "0"})
        )
        await ws.send_bytes(
            out.syn_stream(3, {"streamtype": "data", "port": "80", "requestid": "0"})
        )
        await ws.send_bytes(out.data(3, b"tunnelled"))
        frames: list[spdy.Frame] = []
        async with asyncio.timeout(WAIT):
            while spdy.Data(3, b"tunnelled") not in frames:
                frames += inbound.feed(await ws.receive_bytes())
        assert frames[:2] == [spdy.SynReply(1, {}), spdy.SynReply(3, {})]
