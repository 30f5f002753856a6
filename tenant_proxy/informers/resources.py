"""The informers of the filtered resources: one per resource the rules read, each keeping the
projection of every object the rules need (`tenancy.projection`) and feeding the watch cache.

When the rules change, `follow` starts, re-projects and stops informers. A resource whose
projections may lack a field the new rules read is listed again and held meanwhile: nothing of it
is judged (`resyncing`), and filtered reads of it wait (`holding`), after the first sync for at
most `sync_timeout` seconds. A resource without a built-in path is found by discovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from tenant_proxy.informers.informer import Informer, OnChange
from tenant_proxy.kube.resources import NAMESPACES, GroupResource
from tenant_proxy.tenancy.projection import FieldPath, Projection, plan_projections, project
from tenant_proxy.tenancy.resource_table import BUILTIN_PATHS
from tenant_proxy.upstream import Upstream, UpstreamError
from tenant_proxy.watchcache.cache import WatchCaches

log = logging.getLogger("tenant_proxy.index")

# A generic resource not served yet (its CRD not installed) is looked for again, with backoff.
DISCOVERY_BACKOFF_SECONDS = (0.2, 10.0)


class SyncedGauge(Protocol):
    """A gauge labelled by resource (prometheus_client's labelled Gauge is one)."""

    def labels(self, resource: str, /) -> Settable: ...

    def remove(self, resource: str, /) -> None: ...


class Settable(Protocol):
    def set(self, value: float) -> None: ...


class IndexMetrics(Protocol):
    """What the index reports: whether each filtered resource's informer has listed. The proxy's
    observability.Metrics is one; the index needs nothing else of it."""

    @property
    def informer_synced(self) -> SyncedGauge: ...


class ResourceInformers:
    """Informers of the filtered resources, by resource."""

    def __init__(
        self,
        upstream: Upstream,
        caches: WatchCaches,
        metrics: IndexMetrics,
        sync_timeout: float,
        max_event_bytes: int,
        hooks: Hooks,
    ) -> None:
        self._upstream, self._caches, self._metrics = upstream, caches, metrics
        self._max_event = max_event_bytes
        self._sync_timeout, self._hooks = sync_timeout, hooks
        self.informers: dict[GroupResource, Informer[Projection]] = {}
        # The fields each indexed resource is projected with (or will be, once discovered).
        self.held: dict[GroupResource, frozenset[FieldPath]] = {}
        self._starting: set[GroupResource] = set()
        # Indexed resources whose objects may lack a field the current rules read.
        self.resyncing: set[GroupResource] = set()
        # Those filtered reads wait for, each until its deadline (none before the first sync).
        self.holding: dict[GroupResource, asyncio.TimerHandle | None] = {}
        self.settled = asyncio.Event()
        self.holds_moved = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()

    def store(self, gr: GroupResource) -> Mapping[str, Projection]:
        informer = self.informers.get(gr)
        return informer.store if informer is not None else {}

    async def stop(self) -> None:
        for gr in list(self.holding):
            self._release(gr)
        for task in list(self._background):
            task.cancel()
        for informer in self.informers.values():
            await informer.stop()

    def follow(self, needed: Mapping[GroupResource, frozenset[FieldPath]]) -> None:
        """Index what the current rules read: start, re-project and stop informers."""
        plan = plan_projections(self.held, needed)
        for gr in plan.stop:
            self._retire(gr)
        for gr in plan.reproject:
            self.held[gr] = needed[gr]
            if gr in self.informers:  # else still being discovered: it starts with these
                self.informers[gr].reproject(_projector(needed[gr]))
        for gr in plan.start:
            self.held[gr] = needed[gr]
            path = BUILTIN_PATHS.get(gr)
            if path is not None:
                self._run_informer(gr, path)
            elif gr not in self._starting:
                self._starting.add(gr)
                self._in_background(self._discover_and_run(gr))
        for gr in plan.resync:
            self.resyncing.add(gr)
            self._hold(gr)
        self._settle()

    def _retire(self, gr: GroupResource) -> None:
        del self.held[gr]
        self.resyncing.discard(gr)
        self._release(gr)
        with contextlib.suppress(KeyError):
            self._metrics.informer_synced.remove(str(gr))
        informer = self.informers.pop(gr, None)
        if informer is not None:
            informer.cancel()
        self._caches.close(gr)

    def _run_informer(self, gr: GroupResource, path: str) -> None:
        informer: Informer[Projection] = Informer(
            self._upstream,
            path,
            _projector(self.held[gr]),
            self._on_change(gr),
            max_event_bytes=self._max_event,
            on_listed=lambda: self._listed(gr, informer),
            on_denied=self._hooks.on_denied,
            whole=self._caches.open(gr, path),
        )
        self.informers[gr] = informer
        informer.start()

    def _on_change(self, gr: GroupResource) -> OnChange[Projection]:
        on_object, on_namespace = self._hooks.on_object, self._hooks.on_namespace

        def changed(key: str, old: Projection | None, new: Projection | None) -> None:
            on_object(gr)
            if gr == NAMESPACES:
                on_namespace(key, old, new)

        return changed

    async def _discover_and_run(self, gr: GroupResource) -> None:
        backoff = DISCOVERY_BACKOFF_SECONDS[0]
        try:
            while gr in self.held:  # else no rule reads it any more
                path = await self._discover(gr)
                if path is not None:
                    self._run_informer(gr, path)
                    return
                if gr in self.holding:
                    # Not served (yet): nothing to wait for, and nothing of it is judged.
                    log.warning("no served version found for %s; not indexed until one is", gr)
                    self._release(gr)
                    self._settle()
                await asyncio.sleep(backoff)  # ask the API server again, less and less often
                backoff = min(backoff * 2, DISCOVERY_BACKOFF_SECONDS[1])
        finally:
            self._starting.discard(gr)

    def _listed(self, gr: GroupResource, informer: Informer[Projection]) -> None:
        if self.informers.get(gr) is not informer:
            return  # retired meanwhile
        self._metrics.informer_synced.labels(str(gr)).set(1)
        if gr in self.resyncing:
            self.resyncing.discard(gr)
            self._release(gr)
            self._settle()
            self._hooks.on_revealed()  # the rules' fields are indexed now

    def _hold(self, gr: GroupResource) -> None:
        """Make filtered reads wait for `gr`'s listing: after the first sync, for as long as
        they would wait for the first sync, not for as long as it fails."""
        self._release(gr)
        self.holding[gr] = (
            asyncio.get_running_loop().call_later(self._sync_timeout, self._stop_holding, gr)
            if self._hooks.ready()
            else None
        )

    def _release(self, gr: GroupResource) -> None:
        deadline = self.holding.pop(gr, None)
        if deadline is not None:
            deadline.cancel()

    def _stop_holding(self, gr: GroupResource) -> None:
        # One resource the proxy cannot list (say its RBAC lacks a new rule's resource) must
        # not hold every tenant's filtered reads; its own objects stay unjudged (fail closed).
        log.error(
            "%s was not listed within %gs; filtered reads no longer wait for it",
            gr,
            self._sync_timeout,
        )
        self.holding.pop(gr, None)
        self._settle()

    def _settle(self) -> None:
        # Every change to what is held ends here: wake the readers waiting on one resource.
        self.holds_moved.set()
        self.holds_moved = asyncio.Event()
        if self.holding:
            self.settled.clear()
        else:
            self.settled.set()
            self._hooks.on_settled()

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _discover(self, gr: GroupResource) -> str | None:
        try:
            status, doc = await self._upstream.json_call("GET", f"/apis/{gr.group}")
        except UpstreamError:
            return None
        if status != 200 or not isinstance(doc, dict):
            return None
        version = (doc.get("preferredVersion") or {}).get("version")
        return f"/apis/{gr.group}/{version}/{gr.resource}" if version else None


@dataclass(frozen=True)
class Hooks:
    """What the informers tell the index, and ask of it."""

    on_namespace: OnChange[Projection]  # a namespace came, changed or went
    on_object: Callable[[GroupResource], None]  # an object of a filtered resource did
    on_denied: Callable[[], None]  # the API server refused an informer's read
    on_revealed: Callable[[], None]  # a held resource was listed: its objects can be judged
    on_settled: Callable[[], None]  # nothing is held any more
    ready: Callable[[], bool]  # the first sync is done (holds then have deadlines)


def _projector(paths: frozenset[FieldPath]) -> Callable[[Mapping[str, Any]], Projection]:
    return lambda obj: project(obj, paths)
