"""`tenant-proxy demo` as a user runs it: a subprocess, `ready`, then kubectl per kubeconfig."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from e2e_kubectl import kubectl

pytestmark = [pytest.mark.e2e, pytest.mark.kubectl]

SCRIPT = Path(sys.executable).parent / "tenant-proxy"


@pytest.fixture
async def demo_process(tmp_path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    # Run from the directory above the demo's, as a user runs it from a checkout: the printed
    # paths are relative to it.
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "demo",
        "--dir",
        str(tmp_path / "demo-out"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    printed: list[str] = []
    async with asyncio.timeout(60):
        while b"Ctrl-C stops." not in (line := await proc.stdout.readline()):
            assert line, "the demo exited before it was ready"
            printed.append(line.decode())
    (tmp_path / "printed.txt").write_text("".join(printed))
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def names(kubeconfig: Path, resource: str) -> set[str]:
    result = await kubectl(kubeconfig, "get", resource, "-o", "name")
    assert result.code == 0, result.err
    return result.names()


async def test_demo_serves_each_tenant_its_own(
    demo_process: asyncio.subprocess.Process, tmp_path: Path
) -> None:
    out = tmp_path / "demo-out"
    alice, bob, admin = (out / f"{u}.kubeconfig" for u in ("alice", "bob", "admin"))
    assert await names(alice, "namespaces") == {"team-a-dev", "team-a-prod"}
    assert await names(bob, "namespaces") == {"team-b-dev"}
    assert await names(alice, "nodes") == {"node-a1"}
    assert await names(bob, "nodes") == {"node-b1", "node-shared"}
    assert await names(alice, "pv") == {"pv-a-data"}
    assert await names(bob, "pv") == {"pv-b-data"}
    everything = await names(admin, "namespaces")
    assert {"team-a-dev", "team-b-dev", "team-c-dev", "kube-system"} <= everything
    assert len(await names(admin, "pv")) == 4


async def test_demo_stops_cleanly_on_sigterm(demo_process: asyncio.subprocess.Process) -> None:
    demo_process.send_signal(signal.SIGTERM)
    assert demo_process.stdout is not None
    rest = await asyncio.wait_for(demo_process.stdout.read(), 30)
    assert await asyncio.wait_for(demo_process.wait(), 30) == 0
    assert b"stopped" in rest
    assert b"Traceback" not in rest


async def run_printed(command: str, cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *shlex.split(command),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "HOME": str(cwd)},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_printed_commands_run_as_printed(
    demo_process: asyncio.subprocess.Process, tmp_path: Path
) -> None:
    printed = (tmp_path / "printed.txt").read_text().splitlines()
    commands = [
        line.split("#", 1)[0].strip()
        for line in printed[printed.index("Try:") + 1 :]
        if line.startswith("  ")
    ]
    assert len(commands) >= 8, printed
    for command in commands:
        if "--watch" in command or "port-forward" in command:
            continue  # they run until stopped (port-forward: tests/e2e/test_demo_portforward.py)
        code, out = await run_printed(command, tmp_path)
        if command.endswith("get namespace team-b-dev"):
            assert (code, out.strip()) == (
                1,
                'Error from server (NotFound): namespaces "team-b-dev" not found',
            )
        else:
            assert code == 0, f"{command}: {out}"


async def test_demo_prints_its_metrics_address_and_writes_an_audit_log(
    demo_process: asyncio.subprocess.Process, tmp_path: Path
) -> None:
    printed = (tmp_path / "printed.txt").read_text()
    found = re.search(r"metrics: (http://\S+/metrics)", printed)
    assert found is not None, printed
    code, _ = await run_printed(
        f"{SCRIPT.parent / 'kubectl'} --kubeconfig demo-out/alice.kubeconfig get pv", tmp_path
    )
    assert code == 0
    async with aiohttp.ClientSession() as session, session.get(found.group(1)) as resp:
        assert resp.status == 200
        assert "tenant_proxy_build_info{" in await resp.text()
    audit_log = tmp_path / "demo-out" / "audit.log"
    assert "audit.log" in printed
    events = [orjson.loads(line) for line in audit_log.read_text().splitlines()]
    listed = [
        e
        for e in events
        if e["stage"] == "ResponseComplete"
        and e.get("objectRef", {}).get("resource") == "persistentvolumes"
    ]
    assert listed, events
    assert listed[-1]["user"]["username"] == "alice"
    assert listed[-1]["annotations"]["tenant-proxy.io/hidden-objects"] == "3"
