"""`--workers N`: N processes serving the same ports through SO_REUSEPORT.

Each worker is a full proxy (own upstream session, own informers): nothing is shared but the
metrics directory (shared_metrics.py), so a worker can die without taking the others' clients
along, and N replicas of the Deployment behave exactly like N workers. The parent only starts,
forwards signals to, and reaps them, marking each one dead in the metrics as it exits.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Sequence
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from prometheus_client.multiprocess import mark_process_dead

from tenant_proxy import loop, shared_metrics
from tenant_proxy.config import Settings
from tenant_proxy.observability.logs import setup_logging

log = logging.getLogger("tenant_proxy.workers")


def run_one(
    settings: Settings,
    reuse_port: bool,
    config_path: Path | None = None,
    metrics_dir: Path | None = None,
) -> int:
    """Serve in this process, on uvloop when it is installed."""
    from tenant_proxy.server import serve_forever

    loop.run(serve_forever(settings, reuse_port, config_path, metrics_dir))
    return 0


def _worker(settings: Settings, config_path: Path | None, metrics_dir: Path) -> None:
    # A spawned process starts with Python's default logging, not the parent's JSON lines.
    setup_logging(settings.observability.log_level, settings.observability.audit_file)
    run_one(settings, reuse_port=True, config_path=config_path, metrics_dir=metrics_dir)


def run_workers(settings: Settings, workers: int, config_path: Path | None = None) -> int:
    if workers <= 1:
        return run_one(settings, reuse_port=False, config_path=config_path)
    metrics = settings.observability.metrics
    ports = [settings.listener.port, settings.admin.listener.port]
    if 0 in ports + ([metrics.port] if metrics is not None else []):
        raise SystemExit("tenant-proxy: --workers needs fixed listener ports")
    with shared_metrics.private_dir() as metrics_dir:
        log.info("workers share metrics", extra={"fields": {"directory": str(metrics_dir)}})
        ctx = multiprocessing.get_context("spawn")
        procs = [
            ctx.Process(target=_worker, args=(settings, config_path, metrics_dir), daemon=False)
            for _ in range(workers)
        ]
        for proc in procs:
            proc.start()
        _forward_signals(procs)
        _reap(procs, metrics_dir)
    # A worker that died (killed, crashed) makes the run a failure even if the others drained.
    return 0 if all(proc.exitcode == 0 for proc in procs) else 1


def _forward_signals(procs: Sequence[BaseProcess]) -> None:
    def forward(signum: int, _frame: FrameType | None) -> None:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)


def _reap(procs: Sequence[BaseProcess], metrics_dir: Path) -> None:
    """Wait for every worker; as each exits, drop its live gauges (open watches, in flight)."""
    running = list(procs)
    while running:
        ready = wait([proc.sentinel for proc in running])
        for proc in [p for p in running if p.sentinel in ready]:
            running.remove(proc)
            proc.join()
            fields = {"pid": proc.pid, "exit_code": proc.exitcode}
            level = logging.INFO if proc.exitcode == 0 else logging.WARNING
            log.log(level, "worker exited", extra={"fields": fields})
            mark_process_dead(proc.pid, str(metrics_dir))  # type: ignore[no-untyped-call]
