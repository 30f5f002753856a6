"""Wires listeners to pipelines: the tenant and admin HTTPS listeners, and plain-HTTP metrics.

Only wiring lives here (the request path is `serving/pipeline.py`, its executors the rest of
`serving/`). `ProxyServer` is used both by `tenant-proxy serve` and, in-process, by the tests
and the demo.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from tenant_proxy.auth.configured import Authentication
from tenant_proxy.config import ListenerSettings, Settings
from tenant_proxy.filtering.continuation import ContinueTokens
from tenant_proxy.identity import Identity
from tenant_proxy.informers.index import TenancyIndex
from tenant_proxy.observability.audit_trail import Auditor
from tenant_proxy.observability.metrics import Metrics
from tenant_proxy.serving.across_namespaces import AcrossNamespaces
from tenant_proxy.serving.bodies import BodyLimits
from tenant_proxy.serving.caller import Routes
from tenant_proxy.serving.config_watcher import ConfigWatcher
from tenant_proxy.serving.filtered import FilteredReads
from tenant_proxy.serving.filtered_get import FilteredGet
from tenant_proxy.serving.filtered_list import FilteredList
from tenant_proxy.serving.filtered_watch import FilteredWatch
from tenant_proxy.serving.forward import Forward
from tenant_proxy.serving.health import health_app
from tenant_proxy.serving.list_from_cache import CachedLists
from tenant_proxy.serving.listeners import Binding, Bound, bind, pipeline_app
from tenant_proxy.serving.namespace_requests import NamespaceRequests
from tenant_proxy.serving.node_lease import NodeLeases
from tenant_proxy.serving.pipeline import Pipeline
from tenant_proxy.serving.reviews import ReviewAmendment
from tenant_proxy.serving.routes import (
    TenantExecutors,
    TenantRoutes,
    UnfilteredRoutes,
    owned_node,
)
from tenant_proxy.serving.watch_from_cache import CachedWatches
from tenant_proxy.serving.whoami import SelfReview
from tenant_proxy.startup import check_files, check_tls
from tenant_proxy.streams import OpenStreams
from tenant_proxy.tenancy import sources
from tenant_proxy.tls import ReloadingTLS
from tenant_proxy.upstream import Upstream
from tenant_proxy.watchcache.cache import WatchCaches
from tenant_proxy.watchcache.rows import RowBook

log = logging.getLogger("tenant_proxy.server")

# While the API server refuses the informers' reads, readiness is looked at again this often.
READY_RECHECK_SECONDS = 1.0


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
        self.index = TenancyIndex(
            settings.tenancy,
            self.upstream,
            self.metrics,
            caches,
            max_event_bytes=limits.max_watch_event_bytes,
        )
        self.streams = OpenStreams()
        # Every worker and replica serves with this key: tokens one issues, all can read; it
        # follows the key file when the serving certificate is renewed.
        key_file = settings.tls.key_file
        tokens = ContinueTokens(key_file.read_bytes())
        self.tls.on_reload.append(lambda: tokens.rotate(key_file.read_bytes()))
        self._tokens = tokens
        self.auth: Authentication | None = None
        self._reuse_port = reuse_port
        self._listeners: dict[str, Bound] = {}
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
        tenant = self._pipeline("tenant", self._anyone, self._tenant_routes())
        admin = self._pipeline("admin", self._is_admin, self._admin_routes())
        settings = self.settings
        await self._listen(
            "tenant", pipeline_app(tenant, settings.limits), settings.listener, tls=True
        )
        await self._listen(
            "admin", pipeline_app(admin, settings.limits), settings.admin.listener, tls=True
        )
        if settings.observability.metrics is not None:
            health = health_app(self.metrics.exposition, self.readiness)
            await self._listen("metrics", health, settings.observability.metrics, tls=False)

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
    def _forward(self, listener: str) -> Forward:
        max_body = self.settings.limits.max_body_bytes
        return Forward(self.upstream, self.streams, self.metrics, listener, max_body)

    def _tenant_routes(self) -> TenantRoutes:
        forward, max_body = self._forward("tenant"), self.settings.limits.max_body_bytes
        index, namespaces = self.index, self._namespace_requests()
        executors = TenantExecutors(
            forward=forward,
            whoami=SelfReview(max_body),
            filtered=self._filtered_reads(),
            across=AcrossNamespaces(forward, self.upstream),
            reviews=ReviewAmendment(
                self.upstream, lambda view: owned_node(index, view), namespaces.rights, max_body
            ),
            node_lease=NodeLeases(self.upstream),
            namespaces=namespaces,
        )
        return TenantRoutes(index, executors, self.settings.tenancy.sync_timeout_seconds)

    def _admin_routes(self) -> UnfilteredRoutes:
        # Nothing is filtered there: the cluster's RBAC decides, as for a caller in no tenant.
        return UnfilteredRoutes(
            self._forward("admin"), SelfReview(self.settings.limits.max_body_bytes)
        )

    def _filtered_reads(self) -> FilteredReads:
        limits, index, upstream = self.settings.limits, self.index, self.upstream
        bodies = BodyLimits(
            limits.max_filtered_list_bytes, self.settings.upstream.response_timeout_seconds
        )
        rows = RowBook(upstream)
        cached = (
            CachedLists(
                index.caches,
                upstream,
                self._tokens,
                rows,
                fresh_wait=limits.list_freshness_seconds,
            )
            if limits.lists_from_cache
            else None
        )
        watches = CachedWatches(
            index.caches,
            rows,
            self.metrics,
            self.streams,
            bookmark_seconds=limits.watch_bookmark_seconds,
            buffer_events=limits.watch_buffer_events,
            slow_seconds=limits.watch_slow_client_seconds,
        )
        return FilteredReads(
            index,
            self.settings.tenancy.sync_timeout_seconds,
            FilteredGet(upstream, bodies),
            FilteredList(
                upstream,
                bodies,
                self._tokens,
                index.owned,
                page_size=limits.filtered_list_page,
                parallel=limits.filtered_list_reads,
            ),
            FilteredWatch(upstream, index.caches, index.indexed, watches),
            cached,
        )

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

    def _pipeline(
        self, listener: str, admit: Callable[[Identity], bool], routes: Routes
    ) -> Pipeline:
        assert self.auth is not None
        return Pipeline(
            auth=self.auth.chain,
            metrics=self.metrics,
            listener=listener,
            admit=admit,
            delegate=self.auth.delegate,
            routes=routes,
            auditor=Auditor(self.settings.observability.audit),
        )

    async def _listen(
        self, name: str, app: web.Application, where: ListenerSettings, *, tls: bool
    ) -> None:
        binding = Binding(
            self.settings.limits, self.metrics, self.settings.drain_seconds, self._reuse_port
        )
        context = self.tls.listener_context if tls else None
        self._listeners[name] = await bind(name, app, where, binding, context)


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
