"""`pods/<name>/exec` and `/attach` over WebSocket, backed by the echo container.

There are no containers: exec runs a tiny echo "container" (`echo`, `cat`, `sh -c`, `exit`...,
in `exec_channels`), framed in the Kubernetes channel protocols kubectl speaks; an exec or attach
over SPDY is echoed as any other upgrade (`upgrades`). The command logic and the framing are pure
functions; the handlers only move bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import WSMsgType, web

from tenant_proxy.emulator import errors
from tenant_proxy.emulator.exec_channels import (
    CLOSE,
    EXEC_PROTOCOLS,
    STDERR,
    STDIN,
    STDOUT,
    V5,
    Finished,
    Interactive,
    Plan,
    Sleeping,
    decode_frame,
    encode_frame,
    plan_command,
    status_frame,
)
from tenant_proxy.emulator.pod_logs import container_name, flag, meta
from tenant_proxy.emulator.types import Attributes, KubeObject
from tenant_proxy.emulator.upgrades import (
    is_spdy,
    is_websocket,
    offered_protocols,
    portforward_or_spdy,
)


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
        stdin=flag(request, "stdin"),
        stdout=request.query.get("stdout", "true").lower() in ("true", "1"),
        stderr=request.query.get("stderr", "true").lower() in ("true", "1")
        and not flag(request, "tty"),
    )


async def exec_or_attach(
    request: web.Request, attrs: Attributes, pod: KubeObject
) -> web.StreamResponse:
    """`pods/<name>/exec` and `/attach` over WebSocket, backed by the echo container."""
    if not is_websocket(request):
        if is_spdy(request):
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
    pod_name = str(meta(pod).get("name", attrs.name))
    if attrs.subresource == "attach":
        plan: Plan = Interactive() if session.stdin else Sleeping(None)
    else:
        plan = plan_command(argv, pod_name, stdin=session.stdin)
    code = await _run(ws, session, plan)
    if not ws.closed:
        status = status_frame(protocol, argv, code)
        if isinstance(status, str):
            await ws.send_str(status)
        else:
            await ws.send_bytes(status)
        await ws.close()
    return ws
