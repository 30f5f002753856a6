"""Streaming subresources as test doubles: pods/log, exec/attach over WebSocket, port-forward.

There are no containers: logs come from a pod annotation plus lines appended through a
`LogBook`; exec runs a tiny echo "container" (`echo`, `cat`, `sh -c`, `exit`...), framed in
the Kubernetes channel protocols kubectl speaks (v5/v4.channel.k8s.io, base64 variants); a
port-forward or `Upgrade: SPDY/3.1` request is answered 101 and every byte is echoed back,
enough to prove a proxy splices upgraded connections. The command logic and the framing are
pure functions; the handlers only move bytes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from tenant_proxy.emulator import errors, portforward
from tenant_proxy.emulator.identity import WEBSOCKET_BEARER_PREFIX
from tenant_proxy.emulator.types import Attributes, KubeObject

LOG_ANNOTATION = "emulator.tenant-proxy.io/log"
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
BASE64 = "base64.channel.k8s.io"
CHANNEL = "channel.k8s.io"
EXEC_PROTOCOLS = (V5, V4, V4_BASE64, BASE64, CHANNEL)
PORTFORWARD_PROTOCOLS = ("SPDY/3.1+portforward.k8s.io", "portforward.k8s.io", V4_BASE64, V4)
_IDLE_CHECK = 1.0  # seconds between checks that a log follower is still connected
_SHELLS = {"sh", "bash", "ash", "dash"}
_KNOWN = {"echo", "true", "false", "exit", "hostname", "cat", "sleep", *_SHELLS}


# --- logs ---------------------------------------------------------------------------------


class LogBook:
    """Log lines appended in-process (the emulator's stand-in for container output).

    `pods/log?follow=true` streams what is appended until `close` (say, the pod is deleted).
    """

    def __init__(self) -> None:
        self._lines: dict[tuple[str, str], list[str]] = {}
        self._closed: set[tuple[str, str]] = set()
        self._changed: dict[tuple[str, str], asyncio.Event] = {}

    def append_log(self, namespace: str, pod: str, line: str) -> None:
        key = (namespace, pod)
        self._lines.setdefault(key, []).append(line.rstrip("\n"))
        self._wake(key)

    def close(self, namespace: str, pod: str) -> None:
        key = (namespace, pod)
        self._closed.add(key)
        self._wake(key)

    def lines(self, namespace: str, pod: str) -> list[str]:
        return list(self._lines.get((namespace, pod), ()))

    async def wait_past(self, namespace: str, pod: str, seen: int) -> bool:
        """Wait until more than `seen` lines exist; False once the log is closed."""
        key = (namespace, pod)
        while len(self._lines.get(key, ())) <= seen:
            if key in self._closed:
                return False
            event = self._changed.setdefault(key, asyncio.Event())
            await event.wait()
        return True

    def _wake(self, key: tuple[str, str]) -> None:
        event = self._changed.pop(key, None)
        if event is not None:
            event.set()


def _meta(pod: KubeObject) -> dict[str, Any]:
    meta: dict[str, Any] = pod.get("metadata") or {}
    return meta


def initial_log_lines(pod: KubeObject) -> list[str]:
    """What the pod has "printed" before anything was appended."""
    text = (_meta(pod).get("annotations") or {}).get(LOG_ANNOTATION)
    if text is None:
        return [f"hello from {_meta(pod).get('name', '')}"]
    return str(text).splitlines()


def container_name(pod: KubeObject, asked: str) -> str:
    """The container a log/exec/attach request means, validated as the real server does."""
    name = str(_meta(pod).get("name", ""))
    containers = [str(c.get("name", "")) for c in (pod.get("spec") or {}).get("containers") or ()]
    if asked:
        if containers and asked not in containers:
            raise errors.bad_request(f"container {asked} is not valid for pod {name}")
        return asked
    if len(containers) > 1:
        raise errors.bad_request(
            f"a container name must be specified for pod {name}, "
            f"choose one of: [{' '.join(containers)}]"
        )
    return containers[0] if containers else ""


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("true", "1")


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise errors.bad_request(f'invalid value for "{name}": {raw}') from None


def _log_line(line: str, timestamps: bool) -> bytes:
    if timestamps:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
        line = f"{stamp} {line}"
    return (line + "\n").encode()


async def pod_log(
    request: web.Request,
    attrs: Attributes,
    pod: KubeObject,
    follow_events: LogBook | None = None,
) -> web.StreamResponse:
    """`GET pods/<name>/log`: tailLines, limitBytes, timestamps, follow.

    Without a LogBook only the pod's own lines are served and `follow` ends at once.
    """
    container = container_name(pod, request.query.get("container", ""))
    if _flag(request, "previous"):
        raise errors.bad_request(
            f'previous terminated container "{container}" in pod "{attrs.name}" not found'
        )
    tail, limit = _int_param(request, "tailLines"), _int_param(request, "limitBytes")
    stamps = _flag(request, "timestamps")
    namespace = str(_meta(pod).get("namespace", attrs.namespace))
    name = str(_meta(pod).get("name", attrs.name))
    if follow_events is None:
        follow_events = LogBook()
        follow_events.close(namespace, name)
    existing = initial_log_lines(pod) + follow_events.lines(namespace, name)
    shown = existing[-tail:] if tail is not None and tail >= 0 else existing
    if tail == 0:
        shown = []
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    budget = _Budget(limit)
    for line in shown:
        if not await budget.write(response, _log_line(line, stamps)):
            return response
    if _flag(request, "follow"):
        seen = len(existing) - len(initial_log_lines(pod))
        while await _more_lines(request, follow_events, namespace, name, seen):
            for line in follow_events.lines(namespace, name)[seen:]:
                seen += 1
                if not await budget.write(response, _log_line(line, stamps)):
                    return response
    await response.write_eof()
    return response


async def _more_lines(
    request: web.Request, book: LogBook, namespace: str, name: str, seen: int
) -> bool:
    """Wait for a new line; False when the log closes or the client has gone (a server
    without handler cancellation would otherwise keep this follower forever)."""
    while True:
        transport = request.transport
        if transport is None or transport.is_closing():
            return False
        try:
            return await asyncio.wait_for(book.wait_past(namespace, name, seen), _IDLE_CHECK)
        except TimeoutError:
            continue


class _Budget:
    """limitBytes: stop writing once the limit is reached."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit

    async def write(self, response: web.StreamResponse, data: bytes) -> bool:
        if self.left is not None:
            data = data[: self.left]
            self.left -= len(data)
        if data:
            await response.write(data)
        return self.left is None or self.left > 0


# --- the echo container -------------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    """A command that runs to completion without reading stdin."""

    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int = 0


@dataclass(frozen=True)
class Interactive:
    """A command that copies stdin to stdout until stdin closes (`cat`, an interactive shell)."""


@dataclass(frozen=True)
class Sleeping:
    """`sleep N`: finishes after N seconds (None: never), or when the client goes away."""

    seconds: float | None


Plan = Finished | Interactive | Sleeping


def _not_found(cmd: str) -> Finished:
    message = (
        "OCI runtime exec failed: exec failed: unable to start container process: "
        f'exec: "{cmd}": executable file not found in $PATH: unknown\r\n'
    )
    return Finished(stdout=message.encode(), exit_code=127)


def _shell(args: Sequence[str], pod_name: str, stdin: bool) -> Plan:
    if len(args) >= 2 and args[0] == "-c":
        try:
            script = shlex.split(args[1])
        except ValueError:
            return Finished(stderr=b"sh: syntax error: unterminated quoted string\n", exit_code=2)
        if not script:
            return Finished()
        if script[0].rsplit("/", 1)[-1] not in _KNOWN:
            return Finished(stderr=f"sh: 1: {script[0]}: not found\n".encode(), exit_code=127)
        return plan_command(script, pod_name, stdin=False)
    return Interactive() if stdin else Finished()


def plan_command(argv: Sequence[str], pod_name: str, *, stdin: bool) -> Plan:
    """What the echo container does for `argv`."""
    if not argv:
        return Finished()
    cmd, args = argv[0].rsplit("/", 1)[-1], list(argv[1:])
    if cmd == "echo":
        newline = not (args and args[0] == "-n")
        words = args[1:] if not newline else args
        return Finished(stdout=(" ".join(words) + ("\n" if newline else "")).encode())
    if cmd in ("true", "false", "exit"):
        code = {"true": 0, "false": 1}.get(cmd)
        if code is None:
            code = int(args[0]) % 256 if args and args[0].lstrip("-").isdigit() else 0
        return Finished(exit_code=code)
    if cmd == "hostname":
        return Finished(stdout=f"{pod_name}\n".encode())
    if cmd == "cat" and not args:
        return Interactive() if stdin else Finished()
    if cmd == "sleep" and args:
        try:
            return Sleeping(float(args[0]))
        except ValueError:
            return Finished(stderr=f"sleep: invalid number '{args[0]}'\n".encode(), exit_code=1)
    if cmd in _SHELLS:
        return _shell(args, pod_name, stdin)
    return _not_found(argv[0])


def exit_status(argv: Sequence[str], exit_code: int) -> dict[str, Any]:
    """The error-channel Status for an exit code, as the kubelet writes it (v4 and v5)."""
    if exit_code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command "
        f"[{' '.join(argv)}], exit code {exit_code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
    }


# --- channel framing ----------------------------------------------------------------------


def encode_frame(protocol: str, channel: int, data: bytes) -> bytes | str:
    """One WebSocket message: the channel byte then the data (base64 protocols: text)."""
    if protocol in (V4_BASE64, BASE64):
        return str(channel) + base64.b64encode(data).decode("ascii")
    return bytes([channel]) + data


def decode_frame(protocol: str, message: bytes | str) -> tuple[int, bytes] | None:
    """(channel, data) of a client message; None when it is not a frame."""
    if isinstance(message, str):
        if protocol not in (V4_BASE64, BASE64) or not message or not message[0].isdigit():
            return None
        try:
            return int(message[0]), base64.b64decode(message[1:], validate=True)
        except binascii.Error:
            return None
    if not message:
        return None
    return message[0], bytes(message[1:])


def _status_frame(protocol: str, argv: Sequence[str], exit_code: int) -> bytes | str:
    status = exit_status(argv, exit_code)
    if protocol in (V4, V5, V4_BASE64):
        payload = json.dumps(status, separators=(",", ":")).encode()
    else:
        # channel.k8s.io v1: the error channel carries a plain message, empty on success.
        payload = status.get("message", "").encode()
    return encode_frame(protocol, ERROR, payload)


# --- exec / attach ------------------------------------------------------------------------


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def _is_spdy(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower().startswith("spdy/")


def offered_protocols(request: web.Request) -> list[str]:
    """Offered subprotocols, without bearer tokens sent as subprotocols (never echoed)."""
    header = ",".join(request.headers.getall("Sec-WebSocket-Protocol", []))
    offered = (p.strip() for p in header.split(","))
    return [p for p in offered if p and not p.startswith(WEBSOCKET_BEARER_PREFIX)]


def _choose_protocol(request: web.Request, supported: Sequence[str]) -> str:
    offered = offered_protocols(request)
    if not offered:
        return ""
    for protocol in offered:
        if protocol in supported:
            return protocol
    raise errors.bad_request(
        f"requested protocol(s) are not supported: [{' '.join(offered)}]; "
        f"supports [{' '.join(supported)}]"
    )


@dataclass(frozen=True)
class _Session:
    protocol: str
    stdin: bool
    stdout: bool
    stderr: bool


async def _send(ws: web.WebSocketResponse, session: _Session, channel: int, data: bytes) -> None:
    wanted = {STDOUT: session.stdout, STDERR: session.stderr}.get(channel, True)
    if data and wanted:
        frame = encode_frame(session.protocol, channel, data)
        if isinstance(frame, str):
            await ws.send_str(frame)
        else:
            await ws.send_bytes(frame)


async def _echo_stdin(ws: web.WebSocketResponse, session: _Session) -> None:
    """Copy stdin frames to stdout until stdin closes (v5 close frame) or the socket does."""
    async for msg in ws:
        if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
            continue
        frame = decode_frame(session.protocol, msg.data)
        if frame is None:
            continue
        channel, data = frame
        if channel == STDIN:
            await _send(ws, session, STDOUT, data)
        elif channel == CLOSE and session.protocol == V5 and data[:1] == bytes([STDIN]):
            return


async def _drain_until_closed(ws: web.WebSocketResponse) -> None:
    async for _ in ws:
        pass


async def _run(ws: web.WebSocketResponse, session: _Session, plan: Plan) -> int:
    if isinstance(plan, Finished):
        await _send(ws, session, STDOUT, plan.stdout)
        await _send(ws, session, STDERR, plan.stderr)
        return plan.exit_code
    if isinstance(plan, Interactive):
        await _echo_stdin(ws, session)
        return 0
    # Sleeping: done after the delay, or early when the client hangs up.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_drain_until_closed(ws), timeout=plan.seconds)
    return 0


def _session(request: web.Request, protocol: str) -> _Session:
    return _Session(
        protocol=protocol,
        stdin=_flag(request, "stdin"),
        stdout=request.query.get("stdout", "true").lower() in ("true", "1"),
        stderr=request.query.get("stderr", "true").lower() in ("true", "1")
        and not _flag(request, "tty"),
    )


async def exec_or_attach(
    request: web.Request, attrs: Attributes, pod: KubeObject
) -> web.StreamResponse:
    """`pods/<name>/exec` and `/attach` over WebSocket, backed by the echo container."""
    if not _is_websocket(request):
        if _is_spdy(request):
            return await portforward_or_spdy(request, attrs)
        raise errors.bad_request("Upgrade request required")
    container_name(pod, request.query.get("container", ""))
    argv = request.query.getall("command", [])
    if attrs.subresource == "exec" and not argv:
        raise errors.bad_request("you must specify at least one command for the container")
    protocol = _choose_protocol(request, EXEC_PROTOCOLS)
    ws = web.WebSocketResponse(protocols=(protocol,) if protocol else ())
    await ws.prepare(request)
    session = _session(request, protocol)
    pod_name = str(_meta(pod).get("name", attrs.name))
    if attrs.subresource == "attach":
        plan: Plan = Interactive() if session.stdin else Sleeping(None)
    else:
        plan = plan_command(argv, pod_name, stdin=session.stdin)
    code = await _run(ws, session, plan)
    if not ws.closed:
        status = _status_frame(protocol, argv, code)
        if isinstance(status, str):
            await ws.send_str(status)
        else:
            await ws.send_bytes(status)
        await ws.close()
    return ws


# --- port-forward and raw upgrades --------------------------------------------------------


class _RawReader:
    """Takes the connection's bytes after a 101, in place of aiohttp's HTTP parser.

    Like a real peer it applies back-pressure: past `high` unread bytes it stops reading.
    """

    def __init__(self, transport: asyncio.Transport, high: int = 1 << 20) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._transport, self._high, self._pending, self._paused = transport, high, 0, False

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.queue.put_nowait(bytes(data))
        self._pending += len(data)
        if self._pending > self._high and not self._paused:
            self._transport.pause_reading()
            self._paused = True
        return False, b""

    async def get(self) -> bytes | None:
        data = await self.queue.get()
        if data is not None:
            self._pending -= len(data)
            if self._paused and self._pending < self._high // 2:
                self._transport.resume_reading()
                self._paused = False
        return data

    def feed_eof(self) -> None:
        self.queue.put_nowait(None)


async def _websocket_echo(request: web.Request) -> web.WebSocketResponse:
    offered = offered_protocols(request)
    ws = web.WebSocketResponse(protocols=offered[:1])
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
        elif msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
    return ws


async def _upgrade_raw(
    request: web.Request, version: str | None
) -> tuple[web.StreamResponse, _RawReader | None]:
    """Answer 101 and take the connection's bytes from aiohttp's HTTP parser."""
    headers = {"Connection": "Upgrade", "Upgrade": request.headers.get("Upgrade", "SPDY/3.1")}
    if version:
        headers["X-Stream-Protocol-Version"] = version
    response = web.StreamResponse(status=101, headers=headers)
    response.force_close()
    await response.prepare(request)
    if request.transport is None:
        return response, None
    reader = _RawReader(request.transport)
    request.protocol.set_parser(reader)  # type: ignore[arg-type]
    return response, reader


async def _raw_write(request: web.Request, data: bytes) -> None:
    if request.transport is None or request.transport.is_closing():
        raise ConnectionResetError("the client has gone")
    request.transport.write(data)
    await request.protocol._drain_helper()  # wait for the reader, as a socket would


async def _raw_echo(request: web.Request) -> web.StreamResponse:
    versions = request.headers.getall("X-Stream-Protocol-Version", [])
    response, reader = await _upgrade_raw(request, versions[0] if versions else None)
    if reader is None:
        return response
    while (data := await reader.get()) is not None:
        try:
            await _raw_write(request, data)
        except ConnectionError:
            break
    return response


async def portforward_or_spdy(request: web.Request, attrs: Attributes) -> web.StreamResponse:
    """Any other `Upgrade: SPDY/3.1` request (exec, attach): 101, then every byte is echoed back
    until the client closes; a WebSocket one has its messages echoed."""
    if _is_websocket(request):
        return await _websocket_echo(request)
    if _is_spdy(request):
        return await _raw_echo(request)
    raise errors.bad_request("Upgrade request required")


async def pod_portforward(
    request: web.Request, pod: KubeObject, echo: portforward.EchoServer
) -> web.StreamResponse:
    """`pods/<name>/portforward`: portforward.k8s.io over SPDY, on the upgraded connection or
    tunnelled in WebSocket binary messages (kubectl 1.31+ tries the tunnel first, and falls
    back to SPDY when the upgrade fails: client-go `tools/portforward/fallback_dialer.go`)."""
    meta = _meta(pod)
    session = portforward.Session(
        f"{meta.get('namespace', '')}/{meta.get('name', '')}",
        portforward.declared_ports(pod),
        echo.connect,
    )
    if _is_websocket(request):
        if portforward.TUNNELED not in offered_protocols(request):
            return await _websocket_echo(request)  # another subprotocol: not emulated
        ws = web.WebSocketResponse(protocols=(portforward.TUNNELED,))
        await ws.prepare(request)
        await session.serve(lambda: _binary_message(ws), ws.send_bytes)
        await ws.close()
        return ws
    if not _is_spdy(request):
        raise errors.bad_request("Upgrade request required")
    response, reader = await _upgrade_raw(request, portforward.PROTOCOL)
    if reader is not None:
        await session.serve(reader.get, lambda data: _raw_write(request, data))
    return response


async def _binary_message(ws: web.WebSocketResponse) -> bytes | None:
    """The next binary message's bytes; None once the socket closes."""
    while True:
        msg = await ws.receive()
        if msg.type == WSMsgType.BINARY:
            return bytes(msg.data)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return None
