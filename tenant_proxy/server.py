"""Wires listeners to pipelines: the tenant and admin HTTPS listeners, and plain-HTTP metrics.

Only wiring lives here (what each listener serves is in proxy.py). `ProxyServer` is used both
by `tenant-proxy serve` and, in-process, by the tests and the demo.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web, web_urldispatcher
from prometheus_client import CONTENT_TYPE_LATEST

from tenant_proxy import status
from tenant_proxy.across_namespaces import AcrossNamespaces
from tenant_proxy.authentication import Authentication
from tenant_proxy.config import (
    ConfigError,
    LimitSettings,
    ListenerSettings,
    Settings,
    load_settings,
)
from tenant_proxy.edge import EdgeLimits, EdgeSite, Listener, requests_tracked
from tenant_proxy.filtered import FilteredReads
from tenant_proxy.filtering.continuation import ContinueTokens
from tenant_proxy.identity import Identity
from tenant_proxy.namespace_requests import NamespaceRequests
from tenant_proxy.observability.audit_trail import Auditor
from tenant_proxy.observability.metrics import Metrics
from tenant_proxy.proxy import Pipeline
from tenant_proxy.startup import check_files, check_tls, listen_error
from tenant_proxy.streams import OpenStreams
from tenant_proxy.tenancy import sources
from tenant_proxy.tenancy.index import TenancyIndex
from tenant_proxy.tls import ReloadingTLS
from tenant_proxy.upstream import Upstream
from tenant_proxy.watchcache.cache import WatchCaches

log = logging.getLogger("tenant_proxy.server")

# While the API server refuses the informers' reads, readiness is looked at again this often.
READY_RECHECK_SECONDS = 1.0

# The setting each listener comes from, to name it when it cannot bind.
LISTENER_FIELDS = {
    "tenant": "listener.address",
    "admin": "admin.listener.address",
    "metrics": "observability.metrics.address",
}


@dataclass
class _Listener:
    runner: web.AppRunner
    site: web.BaseSite
    scheme: str

    @property
    def url(self) -> str:
        host, port = self.runner.addresses[0][:2]
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{host}:{port}"


def _expect_within(limit: int) -> Callable[[web.Request], Awaitable[web.StreamResponse | None]]:
    """`Expect: 100-continue` answered as Go's server does in effect: a body declared over the
    limit gets its 413 at once, never a `100 Continue` inviting it (aiohttp's default sends
    100 before the handler sees the length)."""

    async def expect(request: web.Request) -> web.StreamResponse | None:
        if request.content_length is not None and request.content_length > limit:
            err = status.too_large(limit)
            response = web.Response(
                status=err.code, body=status.encode(err), content_type="application/json"
            )
            response.force_close()
            return response
        await web_urldispatcher._default_expect_handler(request)
        return None

    return expect


class ProxyServer:
    """Every listener of one proxy process, sharing one upstream session and tenancy index."""

    def __init__(
        self, settings: Settings, *, reuse_port: bool = False, metrics_dir: Path | None = None
    ) -> None:
        self.settings = settings
        self.metrics = Metrics(metrics_dir)
        self.upstream = Upstream(settings.upstream, observe=self.metrics.upstream_request)
        self.tls = ReloadingTLS(settings.tls)
        limits = settings.limits
        caches = WatchCaches(
            max_entries=limits.watch_cache_events, max_bytes=limits.watch_cache_bytes
        )
        self.index = TenancyIndex(settings.tenancy, self.upstream, self.metrics, caches)
        self.streams = OpenStreams()
        # Every worker and replica serves with this key: tokens one issues, all can read; it
        # follows the key file when the serving certificate is renewed.
        key_file = settings.tls.key_file
        tokens = ContinueTokens(key_file.read_bytes())
        self.tls.on_reload.append(lambda: tokens.rotate(key_file.read_bytes()))
        self.reads = FilteredReads(
            self.index,
            self.upstream,
            self.metrics,
            sync_timeout=settings.tenancy.sync_timeout_seconds,
            max_event_bytes=settings.limits.max_watch_event_bytes,
            watch_buffer_events=settings.limits.watch_buffer_events,
            bookmark_seconds=settings.limits.watch_bookmark_seconds,
            slow_client_seconds=settings.limits.watch_slow_client_seconds,
            lists_from_cache=settings.limits.lists_from_cache,
            list_freshness_seconds=settings.limits.list_freshness_seconds,
            streams=self.streams,
            max_list_bytes=settings.limits.max_filtered_list_bytes,
            list_reads=settings.limits.filtered_list_reads,
            list_page=settings.limits.filtered_list_page,
            body_timeout=settings.upstream.response_timeout_seconds,
            tokens=tokens,
        )
        self.auth: Authentication | None = None
        self._reuse_port = reuse_port
        self._listeners: dict[str, _Listener] = {}
        self._draining = False

    # -- URLs, for tests and the demo -------------------------------------------------------
    @property
    def tenant_url(self) -> str:
        return self._listeners["tenant"].url

    @property
    def admin_url(self) -> str:
        return self._listeners["admin"].url

    @property
    def metrics_url(self) -> str:
        return self._listeners["metrics"].url

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.upstream.start()
        self.auth = Authentication(self.settings.authentication, self.upstream)
        await self.index.start()
        self.tls.start()
        tenant = self._pipeline("tenant", self._anyone)
        tenant.index, tenant.reads = self.index, self.reads
        tenant.across = AcrossNamespaces(self.upstream)
        tenant.namespaces = self._namespace_requests()
        admin = self._pipeline("admin", self._is_admin)
        await self._listen("tenant", self._app(tenant), self.settings.listener, tls=True)
        await self._listen("admin", self._app(admin), self.settings.admin.listener, tls=True)
        if self.settings.observability.metrics is not None:
            await self._listen(
                "metrics", self._health_app(), self.settings.observability.metrics, tls=False
            )

    async def stop(self) -> None:
        """Drain: stop accepting, end watches cleanly, give in-flight requests the deadline."""
        self._draining = True
        tenant_admin = [self._listeners[n] for n in ("tenant", "admin") if n in self._listeners]
        # Watches first: one that opens after this is ended as it registers (draining).
        ended = self.streams.end_all()
        if tenant_admin:  # else a start that failed: nothing was served, nothing drains
            log.info("draining", extra={"fields": {"watches_ended": ended}})
        for listener in tenant_admin:
            # Stops accepting, then waits up to drain_seconds for in-flight requests.
            await listener.runner.cleanup()
        if "metrics" in self._listeners:
            await self._listeners["metrics"].runner.cleanup()
        await self.index.stop()
        if self.auth is not None:
            await self.auth.close()
        await self.tls.stop()
        await self.upstream.close()

    def reload(self, settings: Settings) -> None:
        """Apply what can change without a restart: certificates and the config's tenants.

        Listener addresses, upstream and authentication need a restart (logged if changed).
        """
        self.tls.reload_if_changed()
        changed = self.index.set_config_tenants(settings.tenancy.tenants)
        restart_only = [
            name
            for name in ("listener", "upstream", "authentication", "admin", "workers")
            if getattr(settings, name) != getattr(self.settings, name)
        ]
        if restart_only:
            log.warning("reload: %s changed; those apply at the next restart", restart_only)
        log.info("reloaded", extra={"fields": {"tenants_changed": changed}})

    def readiness(self) -> list[tuple[str, str | None]]:
        """kube-apiserver's readyz checks, each with why it fails (None: passes)."""
        missing = [n for n in ("tenant", "admin") if n not in self._listeners]
        errors = self.index.access_errors()
        return [
            ("ping", None),
            ("listeners", f"not bound: {', '.join(missing)}" if missing else None),
            ("informer-sync", None if self.index.synced else "the informers have not listed"),
            ("upstream-access", "; ".join(errors) if errors else None),
            ("shutdown", "draining" if self._draining else None),
        ]

    # -- pieces ------------------------------------------------------------------------------
    def _namespace_requests(self) -> NamespaceRequests:
        tenancy = self.settings.tenancy
        # Capsule's label even when Capsule is not read here: it may be elsewhere.
        keys = [tenancy.namespace_label, sources.CAPSULE_NAMESPACE_LABEL]
        return NamespaceRequests(
            self.upstream,
            self.index,
            Identity(tenancy.namespace_creator),
            tenancy_keys=keys,
            max_body_bytes=self.settings.limits.max_body_bytes,
            settle_seconds=tenancy.sync_timeout_seconds,
        )

    def _is_admin(self, identity: Identity) -> bool:
        admin = self.settings.admin
        return identity.user in admin.users or any(g in admin.groups for g in identity.groups)

    @staticmethod
    def _anyone(_identity: Identity) -> bool:
        return True

    def _pipeline(self, listener: str, admit: Callable[[Identity], bool]) -> Pipeline:
        assert self.auth is not None
        return Pipeline(
            upstream=self.upstream,
            auth=self.auth.chain,
            metrics=self.metrics,
            listener=listener,
            max_body_bytes=self.settings.limits.max_body_bytes,
            admit=admit,
            delegate=self.auth.delegate,
            streams=self.streams,
            sync_timeout=self.settings.tenancy.sync_timeout_seconds,
            auditor=Auditor(self.settings.observability.audit),
        )

    def _app(self, pipeline: Pipeline) -> web.Application:
        limits = self.settings.limits
        # Bodies are streamed by the pipeline; client_max_size bounds only what aiohttp reads.
        app = web.Application(
            client_max_size=limits.max_body_bytes,
            middlewares=[requests_tracked],
            handler_args={
                "max_line_size": limits.max_line_bytes,
                "max_field_size": limits.max_header_bytes,
                "max_headers": limits.max_header_count,
                # Never inflate a request body (on the loop, in one go: a 10 MiB gzip bomb
                # stalled every tenant for seconds); encoded bodies are refused with 415.
                "auto_decompress": False,
                # A body the proxy refused (413, 415, 401...) is not read to its end: the
                # connection closes after the answer (Go's server reads at most 256 KiB of it),
                # so a client cannot make the proxy decrypt megabytes it will throw away.
                "lingering_time": 0,
                # The edge keeps the idle clock (and counts what it closes); aiohttp's own,
                # an hour by default, is only a backstop behind it.
                "keepalive_timeout": limits.idle_timeout_seconds + limits.header_timeout_seconds,
            },
        )
        app.router.add_route(
            "*",
            "/{tail:.*}",
            pipeline.handle,
            expect_handler=_expect_within(self.settings.limits.max_body_bytes),
        )
        app.on_response_prepare.append(pipeline.on_prepare)
        return app

    def _health_app(self) -> web.Application:
        async def metrics(_request: web.Request) -> web.Response:
            body = self.metrics.exposition()
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def live(_request: web.Request) -> web.Response:
            return web.Response(text="ok")

        async def ready(request: web.Request) -> web.Response:
            # As kube-apiserver's /readyz: "ok", or one line per check; a failure's reason
            # only with ?verbose (the port is plain HTTP).
            checks = self.readiness()
            failed = any(reason is not None for _, reason in checks)
            verbose = "verbose" in request.query
            if not failed and not verbose:
                return web.Response(text="ok")
            lines = [
                f"[+]{name} ok"
                if reason is None
                else f"[-]{name} failed: {reason if verbose else 'reason withheld'}"
                for name, reason in checks
            ]
            lines.append(f"readyz check {'failed' if failed else 'passed'}")
            return web.Response(status=503 if failed else 200, text="\n".join(lines) + "\n")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", live)
        app.router.add_get("/livez", live)
        app.router.add_get("/readyz", ready)
        return app

    async def _listen(
        self, name: str, app: web.Application, where: ListenerSettings, *, tls: bool
    ) -> None:
        # handler_cancellation: a client that leaves must cancel its handler (and so its
        # upstream watch); aiohttp's production runner leaves it off by default.
        runner = web.AppRunner(
            app,
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=self.settings.drain_seconds,
        )
        await runner.setup()
        site: web.BaseSite
        if tls:
            assert runner.server is not None
            edge = Listener(
                name, self.tls.listener_context, _edge_limits(self.settings.limits),
                self.metrics, runner.server,
            )  # fmt: skip
            site = EdgeSite(runner, where.host, where.port, edge, reuse_port=self._reuse_port)
        else:
            site = web.TCPSite(
                runner, where.host, where.port, reuse_port=self._reuse_port or None, backlog=1024
            )
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise listen_error(LISTENER_FIELDS[name], where.address, exc) from None
        self._listeners[name] = _Listener(runner, site, "https" if tls else "http")
        log.info(
            "listening", extra={"fields": {"listener": name, "url": self._listeners[name].url}}
        )


def _edge_limits(limits: LimitSettings) -> EdgeLimits:
    return EdgeLimits(
        handshake_timeout=limits.tls_handshake_timeout_seconds,
        header_timeout=limits.header_timeout_seconds,
        idle_timeout=limits.idle_timeout_seconds,
        max_connections=limits.max_connections,
        max_per_address=limits.max_connections_per_address,
        reconnect_rate=limits.reconnect_rate_after_refusals,
        reconnect_burst=limits.reconnect_burst_after_refusals,
    )


async def serve_forever(
    settings: Settings,
    reuse_port: bool = False,
    config_path: Path | None = None,
    metrics_dir: Path | None = None,
) -> None:
    """Run until SIGTERM/SIGINT, then drain. SIGHUP, or a change of the config file, reloads.

    `metrics_dir`: where the workers of `--workers N` share their metrics (None: one process).
    """
    # Files first: each fault is one line naming its field (StartupError), not a traceback.
    check_files(settings)
    check_tls(settings)
    server = ProxyServer(settings, reuse_port=reuse_port, metrics_dir=metrics_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except BaseException:
        await server.stop()
        raise
    watcher = ConfigWatcher(config_path, server) if config_path is not None else None
    if watcher is not None:
        loop.add_signal_handler(signal.SIGHUP, watcher.reload)
        watcher.start(settings.tls.reload_interval_seconds)
    else:
        loop.add_signal_handler(signal.SIGHUP, server.tls.reload_if_changed)
    if await _ready_or_stopped(server, stop, settings.tenancy.sync_timeout_seconds):
        # The index is long-lived: keep it out of every future full collection.
        gc.freeze()
        urls = f"tenant {server.tenant_url} admin {server.admin_url}"
        print(f"tenant-proxy ready: {urls}", flush=True)
        await stop.wait()
    if watcher is not None:
        await watcher.stop()
    await server.stop()


async def _ready_or_stopped(server: ProxyServer, stop: asyncio.Event, period: float) -> bool:
    """Wait until the listeners are bound and the informers have listed (True), or a stop.

    Until then a warning says why not, each time the reason changes: while the API server
    refuses a read the wait can last for ever, and the operator must see the reason.
    """
    stopping = asyncio.ensure_future(stop.wait())
    said = ""
    try:
        while True:
            synced = asyncio.ensure_future(server.index.wait_synced(period))
            await asyncio.wait({stopping, synced}, return_when=asyncio.FIRST_COMPLETED)
            if stopping.done():
                synced.cancel()
                return False
            failing = [(n, r) for n, r in server.readiness() if r is not None]
            if synced.result() and not failing:
                return True
            reasons = "; ".join(f"{n}: {r}" for n, r in failing)
            if reasons != said:
                log.warning("not ready: %s", reasons)
                said = reasons
            if server.index.access_errors():
                # A refused read makes wait_synced answer at once: look again in a while.
                await asyncio.wait({stopping}, timeout=READY_RECHECK_SECONDS)
    finally:
        stopping.cancel()


class ConfigWatcher:
    """Re-reads the config file on SIGHUP or when it changes; a broken file changes nothing."""

    def __init__(self, path: Path, server: ProxyServer) -> None:
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
