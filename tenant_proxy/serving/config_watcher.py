"""Re-reading the config file on SIGHUP or when it changes."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Protocol

from tenant_proxy.config import Settings
from tenant_proxy.observability.metrics import Metrics
from tenant_proxy.settings_file import ConfigError, load_settings

log = logging.getLogger("tenant_proxy.server")


class Reloadable(Protocol):
    """What the watcher reloads (a ProxyServer), and where it counts reloads."""

    metrics: Metrics

    def reload(self, settings: Settings) -> None: ...


class ConfigWatcher:
    """Re-reads the config file on SIGHUP or when it changes; a broken file changes nothing."""

    def __init__(self, path: Path, server: Reloadable) -> None:
        self._path, self._server = path, server
        self._stamp = self._mtime()
        self._task: asyncio.Task[None] | None = None

    def _mtime(self) -> int:
        try:
            return self._path.stat().st_mtime_ns
        except OSError:
            return -1

    def reload(self) -> None:
        self._stamp = self._mtime()
        try:
            settings = load_settings(self._path)
        except ConfigError as exc:
            self._server.metrics.config_reloads.labels("refused").inc()
            log.error("config reload refused, keeping the running configuration: %s", exc)
            return
        self._server.reload(settings)
        self._server.metrics.config_reloads.labels("applied").inc()

    def start(self, interval: float) -> None:
        async def poll() -> None:
            while True:
                await asyncio.sleep(interval)  # polling period for file changes
                if self._mtime() != self._stamp:
                    self.reload()

        self._task = asyncio.get_running_loop().create_task(poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
