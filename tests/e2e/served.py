"""`tenant-proxy serve` as an operator runs it: a subprocess in front of the demo's emulator."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

from tenant_proxy.demo import Demo

SCRIPT = Path(sys.executable).parent / "tenant-proxy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    demo: Demo
    config: Path
    proc: asyncio.subprocess.Process
    log: Path  # the process's stderr: JSON log lines
    metrics_port: int | None

    @property
    def tenant_url(self) -> str:
        address = yaml.safe_load(self.config.read_text())["listener"]["address"]
        return f"https://{address}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"


@asynccontextmanager
async def serve(
    directory: Path, *, workers: int, metrics: bool, env: dict[str, str] | None = None
) -> AsyncIterator[Served]:
    """The demo's emulator with `tenant-proxy serve --workers N` in front, once every worker is
    ready; killed on exit if the test has not stopped it."""
    demo = Demo(directory, tenant_port=free_port(), admin_port=free_port())
    upstream = await demo.start_upstream()
    doc = demo.settings(upstream).model_dump(mode="json")
    metrics_port = free_port() if metrics else None
    doc["observability"]["metrics"] = metrics_port and {"address": f"127.0.0.1:{metrics_port}"}
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump(doc))
    log = directory / "serve.log"
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            str(SCRIPT),
            "serve",
            "--config",
            str(config),
            "--workers",
            str(workers),
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    assert proc.stdout is not None
    try:
        ready = 0
        async with asyncio.timeout(60):
            while ready < workers:
                line = await proc.stdout.readline()
                assert line, f"serve exited before every worker was ready: {log.read_text()}"
                ready += b"tenant-proxy ready" in line
        yield Served(demo, config, proc, log, metrics_port)
    finally:
        if proc.returncode is None:
            # SIGKILL is not forwarded: the workers would outlive the parent, holding the ports.
            # They hold its stdout too, so the parent's end is not seen before theirs.
            for process in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children()]:
                process.kill()
            await proc.wait()
        await demo.stop_upstream()
