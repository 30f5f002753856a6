"""`pods/<name>/portforward` as the kubelet serves it (portforward.k8s.io over SPDY/3.1).

The client (client-go's `tools/portforward`) opens, per local connection, an error stream then a
data stream, both with headers `streamtype`, `port` and `requestid`; each waits for a SYN_REPLY.
The kubelet (`pkg/kubelet/cri/streaming/portforward/httpstream.go`) pairs the two by request id,
dials the port inside the pod, copies bytes both ways over the data stream, writes a failure as
text on the error stream, and closes (FIN) both when the pod's side ends. There are no
containers here: a pod's declared container ports reach a TCP echo server the emulator runs;
any other port is refused as a closed port inside a pod would be.

The transport is either the raw upgraded connection or client-go's WebSocket tunnel (binary
messages carrying the same SPDY byte stream); `serve` only needs a read and a write function.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tenant_proxy.emulator import spdy
from tenant_proxy.emulator.types import KubeObject

PROTOCOL = "portforward.k8s.io"
TUNNELED = f"SPDY/3.1+{PROTOCOL}"  # client-go's WebsocketsSPDYTunnelingPrefix + protocol
_READ_SIZE = 64 * 1024

Read = Callable[[], Awaitable[bytes | None]]
Write = Callable[[bytes], Awaitable[None]]
Connect = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def declared_ports(pod: KubeObject) -> frozenset[int]:
    """The container ports a pod's spec declares (where the echo "listens")."""
    return frozenset(
        int(port["containerPort"])
        for container in (pod.get("spec") or {}).get("containers") or ()
        for port in container.get("ports") or ()
        if isinstance(port, dict) and isinstance(port.get("containerPort"), int)
    )


def refused_message(pod_id: str, port: int) -> str:
    """What the kubelet writes on the error stream when nothing listens (after containerd's
    message; client-go prefixes it with `an error occurred forwarding L -> R:`)."""
    return (
        f"error forwarding port {port} to pod {pod_id}: failed to connect to localhost:{port} "
        f"inside namespace {pod_id!r}, IPv4: dial tcp4 127.0.0.1:{port}: connect: "
        "connection refused"
    )


@dataclass
class _Request:
    """One forwarded connection: its two streams, once both are open."""

    port: int
    error: int = 0
    data: int = 0
    started: bool = False


@dataclass
class Pairing:
    """Pure: streams announced by SYN_STREAM, paired by request id into forwarded connections."""

    requests: dict[str, _Request] = field(default_factory=dict)

    def add(self, stream_id: int, headers: dict[str, str]) -> _Request | str | None:
        """The request now complete (both streams), an error message, or None (wait for more)."""
        try:
            port = int(headers.get("port", ""))
        except ValueError:
            return f"invalid port header: {headers.get('port', '')!r}"
        if not 0 < port < 65536:
            return f"port {port} must be between 1 and 65535"
        kind = headers.get("streamtype", "")
        request = self.requests.setdefault(headers.get("requestid", ""), _Request(port))
        if kind == "error":
            request.error = stream_id
        elif kind == "data":
            request.data = stream_id
        else:
            return f"invalid stream type {kind!r}"
        if request.error and request.data and not request.started:
            request.started = True
            return request
        return None


class Session:
    """One port-forward connection: SPDY frames in, forwarded TCP connections out."""

    def __init__(self, pod_id: str, ports: frozenset[int], connect: Connect) -> None:
        self._pod_id, self._ports, self._connect = pod_id, ports, connect
        self._send: Write | None = None
        self._reader, self._writer = spdy.FrameReader(), spdy.FrameWriter()
        self._pairing = Pairing()
        # What the client sent on each data stream, for the pod (None: it is done writing).
        # Kept from the stream's SYN_REPLY on: the client may write before the pod's side is
        # connected.
        self._inbound: dict[int, asyncio.Queue[bytes | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._write_lock = asyncio.Lock()

    async def _write(self, data: bytes) -> None:
        assert self._send is not None
        async with self._write_lock:  # frames of concurrent copies must not interleave
            await self._send(data)

    async def serve(self, read: Read, write: Write) -> None:
        """Until the client's side ends (`read` gives None)."""
        self._send = write
        try:
            while (chunk := await read()) is not None:
                for frame in self._reader.feed(chunk):
                    await self._on_frame(frame)
        except spdy.SpdyError:
            with contextlib.suppress(ConnectionError):
                await self._write(self._writer.goaway(0, spdy.PROTOCOL_ERROR))
        except ConnectionError:
            pass  # the client has gone
        finally:
            for task in self._tasks:
                task.cancel()

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_frame(self, frame: spdy.Frame) -> None:
        match frame:
            case spdy.SynStream(stream_id, headers):
                await self._write(self._writer.syn_reply(stream_id, {}))
                if headers.get("streamtype") == "data":
                    self._inbound[stream_id] = asyncio.Queue()
                outcome = self._pairing.add(stream_id, headers)
                if isinstance(outcome, str):
                    await self._write(self._writer.data(stream_id, outcome.encode(), fin=True))
                elif outcome is not None:
                    self._spawn(self._forward(outcome))
            case spdy.Data(stream_id, data, fin):
                inbound = self._inbound.get(stream_id)
                if inbound is not None:
                    if data:
                        inbound.put_nowait(data)
                    if fin:
                        inbound.put_nowait(None)
            case spdy.RstStream(stream_id):
                inbound = self._inbound.pop(stream_id, None)
                if inbound is not None:
                    inbound.put_nowait(None)
            case spdy.Ping(ping_id):
                await self._write(self._writer.ping(ping_id))
            case _:
                pass

    async def _forward(self, request: _Request) -> None:
        if request.port not in self._ports:
            message = refused_message(self._pod_id, request.port).encode()
            await self._write(self._writer.data(request.error, message, fin=True))
            await self._write(self._writer.data(request.data, b"", fin=True))
            return
        try:
            reader, writer = await self._connect(request.port)
        except OSError as exc:
            failure = f"error forwarding port {request.port} to pod {self._pod_id}: {exc}"
            await self._write(self._writer.data(request.error, failure.encode(), fin=True))
            return
        to_pod = asyncio.ensure_future(self._to_pod(self._inbound[request.data], writer))
        try:
            while chunk := await reader.read(_READ_SIZE):
                await self._write(self._writer.data(request.data, chunk))
            await self._write(self._writer.data(request.data, b"", fin=True))
            await self._write(self._writer.data(request.error, b"", fin=True))
        except ConnectionError:
            pass
        finally:
            to_pod.cancel()
            self._inbound.pop(request.data, None)
            writer.close()

    @staticmethod
    async def _to_pod(inbound: asyncio.Queue[bytes | None], writer: asyncio.StreamWriter) -> None:
        try:
            while (chunk := await inbound.get()) is not None:
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except ConnectionError:
            pass  # the pod's side is gone: _forward sees it end


class EchoServer:
    """The pods' "containers": a TCP server on loopback that sends back what it receives."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._echo, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for client in self._clients:
                client.close()
            await self._server.wait_closed()
            self._server = None

    async def connect(self, _port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while chunk := await reader.read(_READ_SIZE):
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._clients.discard(writer)
            writer.close()
