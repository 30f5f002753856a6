"""End-to-end fixtures: the demo environment (emulator + proxy), driven by real kubectl.

kubectl runs as a subprocess awaited with asyncio, so the in-process emulator and proxy keep
serving while it waits.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tenant_proxy.demo import Demo
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


async def kubectl(
    kubeconfig: Path, *args: str, stdin: str | None = None, timeout: float = 60
) -> Result:
    env = {**os.environ, "HOME": str(kubeconfig.parent)}
    proc = await asyncio.create_subprocess_exec(
        kubectl_binary(),
        "--kubeconfig",
        str(kubeconfig),
        "--cache-dir",
        str(kubeconfig.parent / f".kube-cache-{kubeconfig.stem}"),
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(
        proc.communicate(stdin.encode() if stdin is not None else None), timeout
    )
    return Result(proc.returncode or 0, out.decode(), err.decode())


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    env = Demo(tmp_path)
    await env.start()
    try:
        yield env
    finally:
        await env.stop()


@pytest.fixture
def alice(demo: Demo) -> Path:
    return demo.dir / "alice.kubeconfig"


@pytest.fixture
def bob(demo: Demo) -> Path:
    return demo.dir / "bob.kubeconfig"


@pytest.fixture
def carol(demo: Demo) -> Path:
    return demo.dir / "carol.kubeconfig"


@pytest.fixture
def admin(demo: Demo) -> Path:
    return demo.dir / "admin.kubeconfig"
