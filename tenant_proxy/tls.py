"""Server TLS for the listeners, re-read when the files change without a restart.

Every handshake picks the newest context through the SNI callback (OpenSSL calls it even when
the client sends no server name), so a rotated certificate or client-CA bundle applies to the
next connection while established ones carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from pathlib import Path

from tenant_proxy.config import TLSSettings

log = logging.getLogger("tenant_proxy.tls")


def build_context(settings: TLSSettings) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(settings.cert_file, settings.key_file)
    if settings.client_ca_file is not None:
        ctx.load_verify_locations(cafile=str(settings.client_ca_file))
        # Optional: bearer-token clients send no certificate; one that is sent must verify.
        ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _fingerprint(paths: list[Path]) -> tuple[tuple[int, int], ...]:
    stamps = []
    for p in paths:
        try:
            st = p.stat()
            stamps.append((st.st_mtime_ns, st.st_size))
        except OSError:
            stamps.append((-1, -1))
    return tuple(stamps)


class ReloadingTLS:
    """A listener context whose certificate and client CA follow the files on disk."""

    def __init__(self, settings: TLSSettings) -> None:
        self._settings = settings
        self._paths = [settings.cert_file, settings.key_file]
        if settings.client_ca_file is not None:
            self._paths.append(settings.client_ca_file)
        self._current = build_context(settings)
        self._seen = _fingerprint(self._paths)
        self.listener_context = build_context(settings)
        self.listener_context.sni_callback = self._pick
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0
        self.on_reload: list[Callable[[], None]] = []

    def _pick(self, sslobj: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
        sslobj.context = self._current

    def reload_if_changed(self) -> bool:
        """Re-read the files if they changed; a broken new set keeps the old one (logged)."""
        seen = _fingerprint(self._paths)
        if seen == self._seen:
            return False
        try:
            self._current = build_context(self._settings)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.error("TLS files changed but cannot be loaded; keeping the previous ones: %s", exc)
            return False
        self._seen = seen
        self.reloads += 1
        log.info("TLS certificate and client CA reloaded")
        for hook in self.on_reload:
            hook()
        return True

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._settings.reload_interval_seconds)  # polling period
            self.reload_if_changed()
