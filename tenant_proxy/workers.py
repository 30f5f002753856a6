"""`--workers N`: N processes serving the same ports through SO_REUSEPORT.

Each worker is a full proxy (own upstream session, own informers): nothing is shared, so a
worker can die without taking the others' clients along, and N replicas of the Deployment
behave exactly like N workers. The parent only starts, forwards signals to, and reaps them.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path
from types import FrameType

from tenant_proxy import loop
from tenant_proxy.config import Settings


def run_one(settings: Settings, reuse_port: bool, config_path: Path | None = None) -> int:
    """Serve in this process, on uvloop when it is installed."""
    from tenant_proxy.server import serve_forever

    loop.run(serve_forever(settings, reuse_port, config_path))
    return 0


def _worker(settings: Settings, config_path: Path | None) -> None:
    run_one(settings, reuse_port=True, config_path=config_path)


def run_workers(settings: Settings, workers: int, config_path: Path | None = None) -> int:
    if workers <= 1:
        return run_one(settings, reuse_port=False, config_path=config_path)
    if settings.listener.port == 0 or settings.admin.listener.port == 0:
        raise SystemExit("tenant-proxy: --workers needs fixed listener ports")
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(settings, config_path), daemon=False)
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()

    def forward(signum: int, _frame: FrameType | None) -> None:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    for proc in procs:
        proc.join()
    return max((proc.exitcode or 0) for proc in procs)
