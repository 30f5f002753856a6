"""The ownership index: who the tenants are, which namespaces are theirs, and a compact copy of
every filtered cluster-scoped object (enough for `owns()`), fed by informers.

Tenancy comes only from admin-owned sources: the config file, the cluster-scoped Tenant CR,
Capsule Tenants, and namespace labels (namespaces are cluster-scoped; a tenant cannot relabel
them). Nothing a tenant can write inside its namespaces widens what it sees.
Every tenancy change bumps `generation` and wakes open watches so they re-judge what they show.
A change whose rules read a field the indexed projections lack, or a resource not indexed yet,
has that resource listed (again) first: until then no judgement rests on its objects (`owned`
finds none, filtered requests wait in `wait_synced`), and the listing bumps the generation once
more so open watches read what the change revealed. RoleBindings (`rolebinding_namespaces`)
bump only when they change what some caller may see, and a burst of them bumps a few times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from tenant_proxy.config import TenancySettings, TenantSettings
from tenant_proxy.identity import Identity
from tenant_proxy.observability.metrics import Metrics
from tenant_proxy.status import ApiError, service_unavailable
from tenant_proxy.tenancy import sources
from tenant_proxy.tenancy.grants import Grant, GrantTable, binding_grants, grant_matters
from tenant_proxy.tenancy.informer import Informer
from tenant_proxy.tenancy.model import (
    NAMESPACES,
    Criteria,
    GroupResource,
    Tenant,
    TenantView,
    owns,
    tenant_namespaces,
)
from tenant_proxy.tenancy.projection import (
    FieldPath,
    Projection,
    plan_projections,
    project,
    projection_needs,
)
from tenant_proxy.tenancy.snapshot import TenancySnapshot
from tenant_proxy.upstream import Upstream, UpstreamError
from tenant_proxy.watchcache.cache import WatchCaches

log = logging.getLogger("tenant_proxy.index")

# Where the built-in filtered resources are served (generic ones are found by discovery).
BUILTIN_PATHS: dict[GroupResource, str] = {
    GroupResource("", "namespaces"): "/api/v1/namespaces",
    GroupResource("", "nodes"): "/api/v1/nodes",
    GroupResource("", "persistentvolumes"): "/api/v1/persistentvolumes",
    GroupResource("storage.k8s.io", "storageclasses"): "/apis/storage.k8s.io/v1/storageclasses",
    GroupResource(
        "networking.k8s.io", "ingressclasses"
    ): "/apis/networking.k8s.io/v1/ingressclasses",
    GroupResource(
        "scheduling.k8s.io", "priorityclasses"
    ): "/apis/scheduling.k8s.io/v1/priorityclasses",
    GroupResource("node.k8s.io", "runtimeclasses"): "/apis/node.k8s.io/v1/runtimeclasses",
    GroupResource("apiextensions.k8s.io", "customresourcedefinitions"): (
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    ),
}

# A generic resource not served yet (its CRD not installed) is looked for again, with backoff.
DISCOVERY_BACKOFF_SECONDS = (0.2, 10.0)

# RoleBinding changes wake open watches once they pause this long, and at the latest this long
# after the first of a burst: well inside the 1 s a caller may wait to see a namespace granted.
GRANT_QUIET_SECONDS = 0.05
GRANT_LONGEST_SECONDS = 0.4


class Coalescer:
    """Calls `fire` once `touch()`es pause for `quiet` seconds, and at the latest `longest`
    seconds after the first of them: a burst costs one call per `longest`, a lone touch is
    acted on within `quiet`."""

    def __init__(self, fire: Callable[[], None], quiet: float, longest: float) -> None:
        self.fire, self.quiet, self.longest = fire, quiet, longest
        self.touches = 0
        self._first = self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> bool:
        return self._timer is not None

    def touch(self) -> None:
        self.touches += 1
        loop = asyncio.get_running_loop()
        self._last = loop.time()
        if self._timer is None:
            self._first = self._last
            self._timer = loop.call_at(self._last + self.quiet, self._due)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> None:
        # One timer per burst, pushed back while touches keep coming, not one per touch.
        loop = asyncio.get_running_loop()
        due = min(self._last + self.quiet, self._first + self.longest)
        if due - loop.time() > 0.001:
            self._timer = loop.call_at(due, self._due)
            return
        self._timer = None
        self.fire()


class TenancyIndex:
    """Tenants, namespace ownership and filtered objects, kept current by informers."""

    def __init__(
        self,
        settings: TenancySettings,
        upstream: Upstream,
        metrics: Metrics,
        caches: WatchCaches | None = None,
    ) -> None:
        self.settings = settings
        self._upstream, self._metrics = upstream, metrics
        # Whole objects and recent history of each filtered resource, for watches and reads.
        self.caches = caches if caches is not None else WatchCaches()
        self.caches.bind(self.snapshot, self._tenancy_version)
        self._config_tenants = sources.tenants_from_settings(
            settings.tenants, settings.namespace_label
        )
        self._cr_tenants: dict[str, Tenant] = {}
        self._capsule_tenants: dict[str, Tenant] = {}
        self._grants = GrantTable()
        self._informers: dict[GroupResource, Informer[Projection]] = {}
        self._meta_informers: list[Informer[Any]] = []
        # The fields each indexed resource is projected with (or will be, once discovered).
        self._held: dict[GroupResource, frozenset[FieldPath]] = {}
        self._starting: set[GroupResource] = set()
        # Indexed resources whose objects may lack a field the current rules read.
        self._resyncing: set[GroupResource] = set()
        # Those filtered reads wait for, each until its deadline (none before the first sync).
        self._holding: dict[GroupResource, asyncio.TimerHandle | None] = {}
        self._settled = asyncio.Event()
        self._holds_moved = asyncio.Event()
        self._ready = False
        self._background: set[asyncio.Task[None]] = set()
        self._own: dict[tuple[str, frozenset[str]], frozenset[str]] | None = None
        self._own_before: dict[tuple[str, frozenset[str]], frozenset[str]] = {}
        self._snapshot: TenancySnapshot | None = None
        self._owned: dict[tuple[GroupResource, tuple[Criteria, ...]], dict[str, Any]] = {}
        self.generation = 0
        self._next_change = asyncio.Event()
        self._denials = asyncio.Event()  # set (and replaced) when an informer is refused
        self.grant_wake = Coalescer(self._bump, GRANT_QUIET_SECONDS, GRANT_LONGEST_SECONDS)
        # With Capsule, its label is the one its webhook enforces on tenant-created namespaces:
        # it wins over ours, which a Capsule tenant owner could otherwise set on its own
        # namespaces (unless Capsule's forbiddenLabels covers it).
        self._label_keys = (
            [sources.CAPSULE_NAMESPACE_LABEL, settings.namespace_label]
            if settings.capsule
            else [settings.namespace_label]
        )

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        if self.settings.watch_tenant_crds:
            self._meta_informers.append(
                Informer(
                    self._upstream,
                    f"/apis/{sources.TENANT_GROUP}/{sources.TENANT_VERSION}/{sources.TENANT_PLURAL}",
                    lambda o: o,
                    self._on_tenant_cr,
                    on_listed=self._note_ready,
                    on_denied=self._on_denied,
                )
            )
        if self.settings.capsule:
            self._meta_informers.append(
                Informer(
                    self._upstream,
                    f"/apis/{sources.CAPSULE_GROUP}/{sources.CAPSULE_VERSION}/{sources.CAPSULE_PLURAL}",
                    lambda o: o,
                    self._on_capsule_tenant,
                    on_listed=self._note_ready,
                    on_denied=self._on_denied,
                )
            )
        if self.settings.rolebinding_namespaces:
            self._meta_informers.append(
                Informer(
                    self._upstream,
                    "/apis/rbac.authorization.k8s.io/v1/rolebindings",
                    binding_grants,
                    self._on_rolebinding,
                    on_listed=self._note_ready,
                    on_denied=self._on_denied,
                )
            )
        for informer in self._meta_informers:
            informer.start()
        self._follow_rules()

    async def stop(self) -> None:
        self.grant_wake.cancel()
        for gr in list(self._holding):
            self._release(gr)
        for task in list(self._background):
            task.cancel()
        for informer in [*self._meta_informers, *self._informers.values()]:
            await informer.stop()

    @property
    def synced(self) -> bool:
        """Whether the index has listed everything once (readiness).

        It stays true while a later tenancy change has a resource listed again: only the
        filtered reads wait for that (`wait_synced`), not every caller nor the readiness probe.
        """
        return self._ready

    def access_errors(self, gr: GroupResource | None = None) -> list[str]:
        """Why the API server refuses the informers' reads (401/403): all of them, or with
        `gr` those a read of `gr` relies on (tenancy sources, namespaces, `gr`)."""
        informers = [*self._meta_informers]
        if gr is None:
            informers.extend(self._informers.values())
        else:
            informers.extend(i for g in {NAMESPACES, gr} if (i := self._informers.get(g)))
        return [i.access_error for i in informers if i.access_error is not None]

    def not_synced_error(self, gr: GroupResource | None = None) -> ApiError:
        """The 503 of a read `wait_synced` let down: naming the refusal if there is one, and
        then without Retry-After (client-go would retry it for ten seconds in vain)."""
        errors = self.access_errors(gr)
        if errors:
            return service_unavailable("; ".join(errors))
        return service_unavailable("the tenancy index is not synced yet", retry_after=1)

    def _on_denied(self) -> None:
        woken, self._denials = self._denials, asyncio.Event()
        woken.set()

    async def wait_synced(self, within: float, gr: GroupResource | None = None) -> bool:
        """As `_wait_current`, but False at once while the API server refuses a read it
        relies on: waiting would not help, and the caller says why (`not_synced_error`)."""
        if self.access_errors(gr):
            return False
        if self._current(gr):
            return True
        try:
            async with asyncio.timeout(within):
                while True:
                    current = asyncio.ensure_future(self._wait_current(within, gr))
                    refused = asyncio.ensure_future(self._denials.wait())
                    try:
                        await asyncio.wait({current, refused}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        refused.cancel()
                        finished = current.done()
                        if not finished:
                            current.cancel()
                    if finished:
                        return current.result()
                    if self.access_errors(gr):
                        return False
        except TimeoutError:
            return False

    async def _wait_current(self, within: float, gr: GroupResource | None = None) -> bool:
        """Whether the index is current, waiting up to `within` seconds for it: every informer
        has listed, and every resource the rules read is indexed with the fields they read
        (after the first sync, a resource is waited for at most `sync_timeout_seconds`).

        With `gr`, only what a read of `gr` relies on: the tenancy sources, the namespaces and
        `gr` itself (a new rule on ingress classes must not hold every tenant's PV lists).
        """
        if self._current(gr):
            return True
        try:
            async with asyncio.timeout(within):
                while not self._current(gr):
                    holds_moved = self._holds_moved
                    await asyncio.gather(*(i.synced.wait() for i in self._meta_informers))
                    if not self._current(gr):
                        await holds_moved.wait()
        except TimeoutError:
            return False
        return True

    def set_config_tenants(self, tenants: list[TenantSettings]) -> bool:
        """Adopt the config file's tenants after a reload; whether anything changed."""
        fresh = sources.tenants_from_settings(tenants, self.settings.namespace_label)
        if fresh == self._config_tenants:
            return False
        self._config_tenants = fresh
        self._tenancy_changed()
        return True

    # -- what the proxy asks ------------------------------------------------------------------
    def tenants(self) -> list[Tenant]:
        return [*self._config_tenants, *self._cr_tenants.values(), *self._capsule_tenants.values()]

    def indexed(self) -> frozenset[GroupResource]:
        """The resources informers keep (or are about to): those a watch cache serves."""
        return frozenset(self._held)

    def filtered_resources(self) -> frozenset[GroupResource]:
        return frozenset(projection_needs(self.tenants()))

    def namespace_owner(self) -> dict[str, str]:
        """Each labelled namespace's tenant label value. The first label key present decides,
        known tenant or not: in Capsule mode a namespace with Capsule's label is that Capsule
        tenant's or nobody's, never ours by a label its owner may set on it."""
        labels = self._informers.get(NAMESPACES)
        owner: dict[str, str] = {}
        if labels is None:
            return owner
        for name, proj in labels.store.items():
            ns_labels = proj["metadata"]["labels"]
            for key in self._label_keys:
                if key in ns_labels:
                    owner[name] = ns_labels[key]
                    break
        return owner

    def view_for(self, identity: Identity) -> TenantView | None:
        """The caller's view at this generation; callers with the same memberships share one.

        Per generation the index computes each tenant's namespaces once, so a tenancy change
        costs O(namespaces) plus O(tenants) per caller, not O(namespaces) per caller.
        """
        return self.snapshot().view_for(identity)

    def snapshot(self) -> TenancySnapshot:
        """Tenancy at this generation, frozen: views judged with it later stay those of now."""
        if self._snapshot is None:
            self._snapshot = TenancySnapshot(
                self.generation,
                tuple(self.tenants()),
                self._own_namespaces(),
                self._grants.frozen() if self.settings.rolebinding_namespaces else None,
            )
        return self._snapshot

    def objects(self, gr: GroupResource) -> dict[str, Projection]:
        """A copy of the indexed objects of `gr` (name -> projection)."""
        informer = self._informers.get(gr)
        return dict(informer.store) if informer is not None else {}

    def owned(self, gr: GroupResource, view: TenantView) -> dict[str, Projection]:
        """The indexed objects of `gr` that `view` owns, computed once per view and generation."""
        if gr in self._resyncing:
            # Its projections may lack a field the rules read: none is judged until the new
            # listing, whose bump wakes the watches to ask again.
            return {}
        # Keyed by the rule itself: tenants of one name from two sources (config, CR, Capsule)
        # may rule differently, and a view's tenant names would mix their owned sets.
        key = (gr, view.rules.get(gr, ()))
        if key not in self._owned:
            informer = self._informers.get(gr)
            store = informer.store if informer is not None else {}
            self._owned[key] = {k: p for k, p in store.items() if owns(view, gr, p)}
        return self._owned[key]

    async def wait_change(self, generation: int) -> int:
        """Return once `generation` is stale (tenancy changed), with the new generation."""
        while self.generation == generation:
            await self._next_change.wait()
        return self.generation

    # -- keeping it current -------------------------------------------------------------------
    def _bump(self) -> None:
        self.generation += 1
        self._own = None
        self._snapshot = None
        self._owned.clear()
        self.grant_wake.cancel()  # this bump publishes the pending grants too
        woken, self._next_change = self._next_change, asyncio.Event()
        woken.set()
        self.caches.tenancy_moved()

    def _tenancy_version(self) -> int | None:
        """The latest resourceVersion any tenancy input has reached (what a tenancy change
        is stamped with in the watch cache)."""
        inputs = [*self._meta_informers]
        if NAMESPACES in self._informers:
            inputs.append(self._informers[NAMESPACES])
        versions = [int(i.resource_version) for i in inputs if i.resource_version.isdigit()]
        return max(versions, default=None)

    def _current(self, gr: GroupResource | None = None) -> bool:
        if not all(i.synced.is_set() for i in self._meta_informers):
            return False
        if gr is None:
            return self._settled.is_set()
        return gr not in self._holding and NAMESPACES not in self._holding

    def _own_namespaces(self) -> dict[tuple[str, frozenset[str]], frozenset[str]]:
        if self._own is None:
            fresh = tenant_namespaces(self.tenants(), self.namespace_owner())
            # Each generation's snapshot lives on in the watch cache's window: a tenant whose
            # namespaces did not change keeps the very set of the generation before, so a
            # window of namespace changes holds each set once, not once per change.
            self._own = {k: _same(v, self._own_before.get(k)) for k, v in fresh.items()}
            self._own_before = self._own
        return self._own

    def _on_tenant_cr(self, key: str, _old: object, new: Mapping[str, Any] | None) -> None:
        self._apply_tenant(
            self._cr_tenants,
            key,
            new,
            lambda o: sources.tenant_from_cr(o, self.settings.namespace_label),
        )

    def _on_capsule_tenant(self, key: str, _old: object, new: Mapping[str, Any] | None) -> None:
        self._apply_tenant(self._capsule_tenants, key, new, sources.tenant_from_capsule)

    def _apply_tenant(
        self, table: dict[str, Tenant], key: str, obj: Mapping[str, Any] | None, parse: Any
    ) -> None:
        before = table.get(key)
        if obj is None:
            table.pop(key, None)
        else:
            try:
                table[key] = parse(obj)
            except Exception as exc:
                # A broken definition grants nothing (fail closed) and says why.
                log.error("tenant %s refused: %s", key, exc)
                table.pop(key, None)
        if table.get(key) != before:  # status or annotation updates change no tenant
            self._tenancy_changed()

    def _on_rolebinding(
        self, _key: str, old: frozenset[Grant] | None, new: frozenset[Grant] | None
    ) -> None:
        flipped = self._grants.replace(old or frozenset(), new or frozenset())
        if not flipped:
            return
        if self.grant_wake.pending:
            self.grant_wake.touch()  # a wake-up is due anyway: no need to judge this one
            return
        tenants, own = self.tenants(), self._own_namespaces()
        if any(grant_matters(grant, tenants, own) for grant in flipped):
            self.grant_wake.touch()

    def _on_namespace(self, _key: str, old: Projection | None, new: Projection | None) -> None:
        old_labels = (old or {}).get("metadata", {}).get("labels", {})
        new_labels = (new or {}).get("metadata", {}).get("labels", {})
        if (
            old is None
            or new is None
            or any(old_labels.get(k) != new_labels.get(k) for k in self._label_keys)
        ):
            self._bump()

    def _tenancy_changed(self) -> None:
        # The resources to list again are marked before the bump wakes anyone.
        self._follow_rules()
        self._bump()

    def _follow_rules(self) -> None:
        """Index what the current rules read: start, re-project and stop informers."""
        needed = projection_needs(self.tenants())
        plan = plan_projections(self._held, needed)
        for gr in plan.stop:
            del self._held[gr]
            self._resyncing.discard(gr)
            self._release(gr)
            with contextlib.suppress(KeyError):
                self._metrics.informer_synced.remove(str(gr))
            informer = self._informers.pop(gr, None)
            if informer is not None:
                informer.cancel()
            self.caches.close(gr)
        for gr in plan.reproject:
            self._held[gr] = needed[gr]
            if gr in self._informers:  # else still being discovered: it starts with these
                self._informers[gr].reproject(_projector(needed[gr]))
        for gr in plan.start:
            self._held[gr] = needed[gr]
            path = BUILTIN_PATHS.get(gr)
            if path is not None:
                self._run_informer(gr, path)
            elif gr not in self._starting:
                self._starting.add(gr)
                self._in_background(self._discover_and_run(gr))
        for gr in plan.resync:
            self._resyncing.add(gr)
            self._hold(gr)
        self._settle()

    def _run_informer(self, gr: GroupResource, path: str) -> None:
        informer: Informer[Projection] = Informer(
            self._upstream,
            path,
            _projector(self._held[gr]),
            self._on_namespace if gr == NAMESPACES else None,
            on_listed=lambda: self._listed(gr, informer),
            on_denied=self._on_denied,
            whole=self.caches.open(gr, path),
        )
        self._informers[gr] = informer
        informer.start()

    async def _discover_and_run(self, gr: GroupResource) -> None:
        backoff = DISCOVERY_BACKOFF_SECONDS[0]
        try:
            while gr in self._held:  # else no rule reads it any more
                path = await self._discover(gr)
                if path is not None:
                    self._run_informer(gr, path)
                    return
                if gr in self._holding:
                    # Not served (yet): nothing to wait for, and nothing of it is judged.
                    log.warning("no served version found for %s; not indexed until one is", gr)
                    self._release(gr)
                    self._settle()
                await asyncio.sleep(backoff)  # ask the API server again, less and less often
                backoff = min(backoff * 2, DISCOVERY_BACKOFF_SECONDS[1])
        finally:
            self._starting.discard(gr)

    def _listed(self, gr: GroupResource, informer: Informer[Projection]) -> None:
        if self._informers.get(gr) is not informer:
            return  # retired meanwhile
        self._metrics.informer_synced.labels(str(gr)).set(1)
        if gr in self._resyncing:
            self._resyncing.discard(gr)
            self._release(gr)
            self._settle()
            self._bump()  # the rules' fields are indexed now: watches may read what they reveal

    def _hold(self, gr: GroupResource) -> None:
        """Make filtered reads wait for `gr`'s listing: after the first sync, for as long as
        they would wait for the first sync, not for as long as it fails."""
        self._release(gr)
        self._holding[gr] = (
            asyncio.get_running_loop().call_later(
                self.settings.sync_timeout_seconds, self._stop_holding, gr
            )
            if self._ready
            else None
        )

    def _release(self, gr: GroupResource) -> None:
        deadline = self._holding.pop(gr, None)
        if deadline is not None:
            deadline.cancel()

    def _stop_holding(self, gr: GroupResource) -> None:
        # One resource the proxy cannot list (say its RBAC lacks a new rule's resource) must
        # not hold every tenant's filtered reads; its own objects stay unjudged (fail closed).
        log.error(
            "%s was not listed within %gs; filtered reads no longer wait for it",
            gr,
            self.settings.sync_timeout_seconds,
        )
        self._holding.pop(gr, None)
        self._settle()

    def _settle(self) -> None:
        # Every change to what is held ends here: wake the readers waiting on one resource.
        self._holds_moved.set()
        self._holds_moved = asyncio.Event()
        if self._holding:
            self._settled.clear()
        else:
            self._settled.set()
            self._note_ready()

    def _note_ready(self) -> None:
        self._ready = self._ready or self._current()

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


def _same(fresh: frozenset[str], before: frozenset[str] | None) -> frozenset[str]:
    return before if before is not None and before == fresh else fresh


def _projector(paths: frozenset[FieldPath]) -> Callable[[Mapping[str, Any]], Projection]:
    return lambda obj: project(obj, paths)
