"""kubectl for the end-to-end tests, as a subprocess awaited with asyncio (the in-process servers
keep serving), and the cluster the tests run against.

A module of its own rather than conftest.py: test modules importing `from conftest import ...`
got whichever conftest pytest had imported last (tests/auth's when a run named tests/auth and
tests/e2e together), and collection failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from tenant_proxy.emulator.testing import kubectl_binary


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.out.splitlines() if line.strip()]

    def names(self) -> set[str]:
        """`-o name` output without the resource prefix."""
        return {line.rsplit("/", 1)[-1] for line in self.lines}


async def start_kubectl(
    kubeconfig: Path, *args: str, stdin: bool = False
) -> asyncio.subprocess.Process:
    """kubectl with `kubeconfig`, its HOME and cache beside it (no user's own leaks in)."""
    return await asyncio.create_subprocess_exec(
        kubectl_binary(),
        "--kubeconfig",
        str(kubeconfig),
        "--cache-dir",
        str(kubeconfig.parent / f".kube-cache-{kubeconfig.stem}"),
        *args,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(kubeconfig.parent)},
    )


async def kubectl(
    kubeconfig: Path, *args: str, stdin: str | None = None, timeout: float = 60
) -> Result:
    proc = await start_kubectl(kubeconfig, *args, stdin=stdin is not None)
    out, err = await asyncio.wait_for(
        proc.communicate(stdin.encode() if stdin is not None else None), timeout
    )
    return Result(proc.returncode or 0, out.decode(), err.decode())


def pod_on_node(name: str, namespace: str, node: str) -> str:
    """A pod bound to `node` (as the scheduler would bind it), for `kubectl create -f -`."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        }
    )


REAL_CLUSTER = os.environ.get("TENANT_PROXY_E2E_KUBECONFIG")


# How long a long-running kubectl may take to print the next line on a loaded machine.
STREAM_WAIT = 20.0


class KubectlStream:
    """A long-running kubectl (`-w`, `logs -f`) whose output lines are awaited one by one."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    async def until(self, predicate: Callable[[str], bool]) -> str:
        assert self.proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), STREAM_WAIT)
            if not raw:
                assert self.proc.stderr is not None
                err = (await self.proc.stderr.read()).decode()
                raise AssertionError(f"kubectl ended early: {self.lines} {err}")
            line = raw.decode().rstrip("\n")
            self.lines.append(line)
            if predicate(line):
                return line


@contextlib.asynccontextmanager
async def kubectl_stream(kubeconfig: Path, *args: str) -> AsyncIterator[KubectlStream]:
    proc = await start_kubectl(kubeconfig, *args)
    try:
        yield KubectlStream(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
