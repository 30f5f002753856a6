"""`tenant-proxy emulator`: run the emulator on its own until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import yaml

from tenant_proxy import kubeconfig
from tenant_proxy.emulator.app import Emulator
from tenant_proxy.emulator.errors import StatusError
from tenant_proxy.emulator.seed import load_files


def split_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`) -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def write_credentials(emulator: Emulator, directory: Path) -> Path:
    """DIR/ca.crt, DIR/ca.key (to mint user certificates) and DIR/admin.kubeconfig."""
    directory.mkdir(parents=True, exist_ok=True)
    emulator.ca.write(directory / "ca.crt", directory / "ca.key")
    return kubeconfig.write_kubeconfig(directory / "admin.kubeconfig", emulator.admin_kubeconfig())


async def serve(listen: str, directory: Path, seeds: list[Path]) -> None:
    host, port = split_listen(listen)
    emulator = Emulator(seed_objects=load_files(seeds), host=host)
    await emulator.start(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        admin = write_credentials(emulator, directory)
        print(f"emulator ready at {emulator.url} (admin kubeconfig: {admin})", flush=True)
        await stop.wait()
    finally:
        await emulator.stop()
        print("emulator stopped", flush=True)


def run(listen: str, directory: Path, seeds: list[Path]) -> int:
    """Blocking entry point of the CLI; 0 after a clean stop, 2 on bad arguments or seeds."""
    try:
        asyncio.run(serve(listen, directory, seeds))
    except (ValueError, OSError, StatusError, yaml.YAMLError) as exc:
        print(f"tenant-proxy emulator: {exc}", file=sys.stderr)
        return 2
    return 0
