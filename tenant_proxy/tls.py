"""Server TLS for the listeners, re-read when the files change without a restart.

Every handshake picks the newest context through the SNI callback (OpenSSL calls it even when
the client sends no server name), so a rotated certificate or client-CA bundle applies to the
next connection while established ones carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import ssl
import weakref
from collections.abc import Callable
from pathlib import Path

from cryptography import x509

from tenant_proxy import pki_verify
from tenant_proxy.config import TLSSettings

log = logging.getLogger("tenant_proxy.tls")


class ServerContext(ssl.SSLContext):
    """A listener context, and the client CA bundle its connections' certificates are
    verified against, on each request (`client_certificate`).

    The handshake accepts any certificate (kube-apiserver's way), except in the fallback where
    libssl cannot be reached: there OpenSSL verifies it too, and an unverifiable certificate
    resets the connection as before.
    """

    client_trust: pki_verify.ClientTrust | None = None


def build_context(settings: TLSSettings) -> ServerContext:
    ctx = ServerContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(settings.cert_file, settings.key_file)
    if settings.client_ca_file is not None:
        ca_pem = settings.client_ca_file.read_bytes()
        ctx.client_trust = pki_verify.load_trust(ca_pem)
        # Optional: bearer-token clients send no certificate.
        ctx.verify_mode = ssl.CERT_OPTIONAL
        if not _accept_any_certificate(ctx):
            ctx.load_verify_locations(cadata=ca_pem.decode())
    ctx.set_alpn_protocols(["http/1.1"])
    # No session tickets. Their clients never resume (client-go's TLSConfigFor sets no
    # ClientSessionCache), while OpenSSL's two TLS 1.3 tickets cost the loop 0.2 of the 0.74 ms
    # of a handshake with a client certificate (each ticket holds a copy of it; measured with
    # memory BIOs); and a context's ticket key lives as long as the process, which weakens
    # forward secrecy (Mozilla's server TLS guidelines turn tickets off for that reason).
    ctx.num_tickets = 0
    ctx.options |= ssl.OP_NO_TICKET
    return ctx


def client_certificate(
    ssl_object: ssl.SSLObject | ssl.SSLSocket | None, now: dt.datetime | None = None
) -> tuple[x509.Certificate | None, str | None]:
    """The verified client certificate of a TLS connection, or why the one sent is refused.

    Verified on every request, even where OpenSSL verified it at the handshake: a keep-alive
    connection outlives the certificate's validity. (Fast: the verdict is kept per chain.)
    """
    chain = pki_verify.peer_chain_der(ssl_object)
    if not chain:
        return None, None
    assert ssl_object is not None
    trust = getattr(ssl_object.context, "client_trust", None)
    if trust is None:  # a context that asks for no client certificate: none can arrive
        return None, pki_verify.UNKNOWN_AUTHORITY
    try:
        return pki_verify.verify_client_certificate(trust, chain, now), None
    except pki_verify.ClientCertificateError as exc:
        return None, str(exc)


# -- asking for any client certificate ----------------------------------------------------------
# Python's ssl cannot accept an unverifiable certificate at the handshake: with CERT_OPTIONAL,
# OpenSSL aborts it. kube-apiserver (Go's tls.RequestClientCert) completes the handshake and
# answers 401. The same here: OpenSSL's verify callback is set on the context to one that
# accepts every certificate (Python keeps a callback it finds when its verify mode is set), and
# the certificate is verified per request against `client_trust`.
def _accept_any_certificate(ctx: ssl.SSLContext) -> bool:
    """Ask for a client certificate and accept any at the handshake; False if not possible
    (then the handshake verifies, as before: a foreign certificate fails it)."""
    try:
        pki_verify.request_any_client_certificate(ctx)
    except (OSError, AttributeError, RuntimeError) as exc:
        log.warning("client certificates are verified at the handshake: %s", exc)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        return False
    return True


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
        # Every context a connection may still be using (see reload_if_changed).
        self._served: weakref.WeakSet[ServerContext] = weakref.WeakSet(
            [self._current, self.listener_context]
        )
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
        # As kube-apiserver, which verifies each request against the bundle of the moment:
        # connections made before the reload are judged against the new one too.
        for ctx in self._served:
            ctx.client_trust = self._current.client_trust
        self._served.add(self._current)
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
