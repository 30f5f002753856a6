"""`kubectl port-forward` through the proxy to a demo pod: bytes go both ways.

kubectl 1.37 tunnels SPDY in a WebSocket (`SPDY/3.1+portforward.k8s.io`) and falls back to a
plain `Upgrade: SPDY/3.1` when the tunnel is refused; the proxy splices either after the API
server's 101, and the emulator's "kubelet" connects each forwarded connection to an echo server
standing in for the pod's container port.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tenant_proxy.demo import Demo
from tenant_proxy.emulator.testing import kubectl_binary

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl, pytest.mark.emulator_only]

WAIT = 30.0
FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)")


def web_pod(namespace: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "nodeName": "node-a1",
            "containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 8080}]}],
        },
    }


@asynccontextmanager
async def port_forward(
    kubeconfig: Path, *args: str, websockets: bool = True
) -> AsyncIterator[tuple[int, list[str]]]:
    """A running `kubectl port-forward`: the local port, and its stderr lines (read at exit).

    `websockets=False` turns kubectl's WebSocket tunnel off (its own switch), so it upgrades
    straight to SPDY as kubectl before 1.31 did.
    """
    env = {
        **os.environ,
        "HOME": str(kubeconfig.parent),
        "KUBECTL_PORT_FORWARD_WEBSOCKETS": str(websockets).lower(),
    }
    proc = await asyncio.create_subprocess_exec(
        kubectl_binary(),
        "--kubeconfig",
        str(kubeconfig),
        "port-forward",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    errors: list[str] = []
    try:
        async with asyncio.timeout(WAIT):
            while (found := FORWARDING.search((await proc.stdout.readline()).decode())) is None:
                if proc.stdout.at_eof():
                    raise AssertionError((await proc.stderr.read()).decode())
        yield int(found.group(1)), errors
    finally:
        if proc.returncode is None:
            proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), WAIT)
        errors.extend(err.decode().splitlines())


async def echo_through(port: int, payloads: list[bytes]) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got = []
    try:
        for payload in payloads:
            writer.write(payload)
            await writer.drain()
            got.append(await asyncio.wait_for(reader.readexactly(len(payload)), WAIT))
    finally:
        writer.close()
    return got


PAYLOADS = [b"hello through the proxy\n", bytes(range(256)) * 4, b"x" * 300_000]


@pytest.mark.parametrize("websockets", [True, False], ids=["websocket-tunnel", "spdy"])
@pytest.mark.parametrize("who", ["alice", "admin"])
async def test_kubectl_port_forward_moves_bytes_both_ways(
    demo: Demo, who: str, websockets: bool
) -> None:
    await demo.emulator.create(web_pod("team-a-dev"))
    kubeconfig = demo.dir / f"{who}.kubeconfig"
    args = ("-n", "team-a-dev", "pod/web", ":8080")
    async with port_forward(kubeconfig, *args, websockets=websockets) as (port, errs):
        assert await echo_through(port, PAYLOADS) == PAYLOADS
        # A second connection over the same forward: a new pair of streams.
        assert await echo_through(port, [b"again"]) == [b"again"]
    assert not [line for line in errs if "error" in line.lower()], errs


async def test_port_forward_to_a_port_nothing_listens_on_reports_the_kubelet_error(
    demo: Demo,
) -> None:
    await demo.emulator.create(web_pod("team-a-dev"))
    alice = demo.dir / "alice.kubeconfig"
    async with port_forward(alice, "-n", "team-a-dev", "pod/web", ":9999") as (port, errs):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"anyone?")
        assert await asyncio.wait_for(reader.read(), WAIT) == b""
        writer.close()
    assert any("connect: connection refused" in line for line in errs), errs


async def test_port_forward_to_a_foreign_pod_is_forbidden(demo: Demo) -> None:
    await demo.emulator.create(web_pod("team-b-dev"))
    alice = demo.dir / "alice.kubeconfig"
    # kubectl reads the pod first: as alice's RBAC says, that is already refused.
    with pytest.raises(AssertionError, match='User "alice" cannot get resource "pods"'):
        async with port_forward(alice, "-n", "team-b-dev", "pod/web", ":8080"):
            pass
