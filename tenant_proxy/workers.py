"""`--workers N`: N processes serving the same ports through SO_REUSEPORT.

Each worker is a full proxy (own upstream session, own informers): nothing is shared, so a
worker can die without taking the others' clients along, and N replicas of the Deployment
behave exactly like N workers. The parent only starts, forwards signals to, and reaps them.
"""

from __future__ import annotations

import multiprocessing
import signal
from types import FrameType

from tenant_proxy import loop
from tenant_proxy.config import Settings


def run_one(settings: Settings, reuse_port: bool) -> int:
    """Serve in this process, on uvloop when it is installed."""
    from tenant_proxy.server import serve_forever

    loop.run(serve_forever(settings, reuse_port))
    return 0


def _worker(settings: Settings) -> None:
    run_one(settings, reuse_port=True)


def run_workers(settings: Settings, workers: int) -> int:
    if workers <= 1:
        return run_one(settings, reuse_port=False)
    if settings.listener.port == 0 or settings.admin.listener.port == 0:
        raise SystemExit("tenant-proxy: --workers needs fixed listener ports")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(settings,), daemon=False) for _ in range(workers)]
    for proc in procs:
        proc.start()

    def forward(signum: int, _frame: FrameType | None) -> None:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                proc.terminate() if signum == signal.SIGTERM else proc.kill()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, lambda *_: forward(signal.SIGTERM, None))
    for proc in procs:
        proc.join()
    return max((proc.exitcode or 0) for proc in procs)
