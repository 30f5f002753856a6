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
from collections.abc import Mapping
from typing import Any

from tenant_proxy.identity import Identity
from tenant_proxy.informers.coalescer import Coalescer
from tenant_proxy.informers.informer import MAX_EVENT_BYTES, Informer, OnChange, Project
from tenant_proxy.informers.resources import Hooks, IndexMetrics, ResourceInformers
from tenant_proxy.kube.resources import NAMESPACES, GroupResource
from tenant_proxy.status import ApiError, service_unavailable
from tenant_proxy.tenancy import sources
from tenant_proxy.tenancy.catalog import TenantCatalog, namespace_owner, tenancy_labels_changed
from tenant_proxy.tenancy.grants import Grant, GrantTable, binding_grants, grant_matters
from tenant_proxy.tenancy.model import Tenant, TenantView, owns, tenant_namespaces
from tenant_proxy.tenancy.projection import Projection, projection_needs
from tenant_proxy.tenancy.rules import Criteria
from tenant_proxy.tenancy.settings import TenancySettings, TenantSettings
from tenant_proxy.tenancy.snapshot import Admission, TenancySnapshot
from tenant_proxy.upstream import Upstream
from tenant_proxy.watchcache.cache import WatchCaches

# RoleBinding changes wake open watches once they pause this long, and at the latest this long
# after the first of a burst: well inside the 1 s a caller may wait to see a namespace granted.
GRANT_QUIET_SECONDS = 0.05
GRANT_LONGEST_SECONDS = 0.4

TENANT_CRS = f"/apis/{sources.TENANT_GROUP}/{sources.TENANT_VERSION}/{sources.TENANT_PLURAL}"
CAPSULE_TENANTS = (
    f"/apis/{sources.CAPSULE_GROUP}/{sources.CAPSULE_VERSION}/{sources.CAPSULE_PLURAL}"
)
ROLEBINDINGS = "/apis/rbac.authorization.k8s.io/v1/rolebindings"


class TenancyIndex:
    """Tenants, namespace ownership and filtered objects, kept current by informers."""

    def __init__(
        self,
        settings: TenancySettings,
        upstream: Upstream,
        metrics: IndexMetrics,
        caches: WatchCaches | None = None,
        *,
        max_event_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        self.settings = settings
        self._max_event = max_event_bytes
        self._upstream = upstream
        # Whole objects and recent history of each filtered resource, for watches and reads.
        self.caches = caches if caches is not None else WatchCaches()
        self.caches.bind(self.snapshot, self._tenancy_version)
        self._catalog = TenantCatalog(settings)
        self._grants = GrantTable()
        self._meta_informers: list[Informer[Any]] = []
        self._resources = ResourceInformers(
            upstream,
            self.caches,
            metrics,
            settings.sync_timeout_seconds,
            max_event_bytes,
            Hooks(
                on_namespace=self._on_namespace,
                on_object=self._on_object,
                on_denied=self._on_denied,
                # Watches may now read what the change revealed (no API event of its own).
                on_revealed=lambda: self._bump(stamped=False),
                on_settled=self._note_ready,
                ready=lambda: self._ready,
            ),
        )
        self._ready = False
        self._own: dict[tuple[str, frozenset[str]], frozenset[str]] | None = None
        self._own_before: dict[tuple[str, frozenset[str]], frozenset[str]] = {}
        self._snapshot: TenancySnapshot | None = None
        # Passed from one generation's snapshot to the next while the tenants stay the same.
        self._admission: Admission | None = None
        self._owned: dict[tuple[GroupResource, tuple[Criteria, ...]], dict[str, Any]] = {}
        self.generation = 0
        self._next_change = asyncio.Event()
        self._denials = asyncio.Event()  # set (and replaced) when an informer is refused
        self.grant_wake = Coalescer(self._bump, GRANT_QUIET_SECONDS, GRANT_LONGEST_SECONDS)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        if self.settings.watch_tenant_crds:
            self._meta(TENANT_CRS, lambda o: o, self._on_tenant_cr)
        if self.settings.capsule:
            self._meta(CAPSULE_TENANTS, lambda o: o, self._on_capsule_tenant)
        if self.settings.rolebinding_namespaces:
            self._meta(ROLEBINDINGS, binding_grants, self._on_rolebinding)
        for informer in self._meta_informers:
            informer.start()
        self._follow_rules()

    def _meta(self, path: str, project: Project[Any], on_change: OnChange[Any]) -> None:
        """An informer of a tenancy source (not of a filtered resource)."""
        self._meta_informers.append(
            Informer(
                self._upstream,
                path,
                project,
                on_change,
                max_event_bytes=self._max_event,
                on_listed=self._note_ready,
                on_denied=self._on_denied,
            )
        )

    async def stop(self) -> None:
        self.grant_wake.cancel()
        await self._resources.stop()
        for informer in self._meta_informers:
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
            informers.extend(self._resources.informers.values())
        else:
            informers.extend(i for g in {NAMESPACES, gr} if (i := self._resources.informers.get(g)))
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
                    holds_moved = self._resources.holds_moved
                    await asyncio.gather(*(i.synced.wait() for i in self._meta_informers))
                    if not self._current(gr):
                        await holds_moved.wait()
        except TimeoutError:
            return False
        return True

    def set_config_tenants(self, tenants: list[TenantSettings]) -> bool:
        """Adopt the config file's tenants after a reload; whether anything changed."""
        if not self._catalog.set_config(tenants):
            return False
        self._tenancy_changed(stamped=False)
        return True

    # -- what the proxy asks ------------------------------------------------------------------
    def tenants(self) -> list[Tenant]:
        return self._catalog.tenants()

    def indexed(self) -> frozenset[GroupResource]:
        """The resources informers keep (or are about to): those a watch cache serves."""
        return frozenset(self._resources.held)

    def filtered_resources(self) -> frozenset[GroupResource]:
        return frozenset(projection_needs(self.tenants()))

    def namespace_owner(self) -> dict[str, str]:
        """Each labelled namespace's tenant label value (`catalog.namespace_owner`)."""
        store = self._resources.store(NAMESPACES)
        labelled = ((name, p["metadata"]["labels"]) for name, p in store.items())
        return namespace_owner(labelled, self._catalog.label_keys)

    def view_for(self, identity: Identity) -> TenantView | None:
        """The caller's view at this generation; callers with the same memberships share one.

        Per generation the index computes each tenant's namespaces once, so a tenancy change
        costs O(namespaces) plus a few lookups per caller, not O(namespaces) per caller.
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
                self._admission,
            )
            self._admission = self._snapshot.admission
        return self._snapshot

    def objects(self, gr: GroupResource) -> dict[str, Projection]:
        """A copy of the indexed objects of `gr` (name -> projection)."""
        return dict(self._resources.store(gr))

    def owned(self, gr: GroupResource, view: TenantView) -> dict[str, Projection]:
        """The indexed objects of `gr` that `view` owns, computed once per view while
        neither tenancy nor an object of `gr` changes."""
        if gr in self._resources.resyncing:
            # Its projections may lack a field the rules read: none is judged until the new
            # listing, whose bump wakes the watches to ask again.
            return {}
        # Keyed by the rule itself: tenants of one name from two sources (config, CR, Capsule)
        # may rule differently, and a view's tenant names would mix their owned sets.
        key = (gr, view.rules.get(gr, ()))
        if key not in self._owned:
            store = self._resources.store(gr)
            self._owned[key] = {k: p for k, p in store.items() if owns(view, gr, p)}
        return self._owned[key]

    def _on_object(self, gr: GroupResource) -> None:
        """An object of `gr` came, changed or went: the owned sets of `gr` are judged again
        when next asked (between tenancy changes, objects still come and go)."""
        if any(key[0] == gr for key in self._owned):
            self._owned = {key: owned for key, owned in self._owned.items() if key[0] != gr}

    async def wait_change(self, generation: int) -> int:
        """Return once `generation` is stale (tenancy changed), with the new generation."""
        while self.generation == generation:
            await self._next_change.wait()
        return self.generation

    # -- keeping it current -------------------------------------------------------------------
    def _bump(self, stamped: bool = True) -> None:
        """Tenancy changed; `stamped`: by an API event (the watch cache orders it by the
        inputs' version), else by a reload or a re-list (ordered as it comes)."""
        self.generation += 1
        self._own = None
        self._snapshot = None
        self._owned.clear()
        self.grant_wake.cancel()  # this bump publishes the pending grants too
        woken, self._next_change = self._next_change, asyncio.Event()
        woken.set()
        self.caches.tenancy_moved(stamped)

    def _tenancy_version(self) -> int | None:
        """The latest resourceVersion any tenancy input has reached (what a tenancy change
        is stamped with in the watch cache)."""
        inputs = [*self._meta_informers]
        if NAMESPACES in self._resources.informers:
            inputs.append(self._resources.informers[NAMESPACES])
        versions = [int(i.resource_version) for i in inputs if i.resource_version.isdigit()]
        return max(versions, default=None)

    def _current(self, gr: GroupResource | None = None) -> bool:
        if not all(i.synced.is_set() for i in self._meta_informers):
            return False
        if gr is None:
            return self._resources.settled.is_set()
        holding = self._resources.holding
        return gr not in holding and NAMESPACES not in holding

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
        if self._catalog.apply_cr(key, new):
            self._tenancy_changed()

    def _on_capsule_tenant(self, key: str, _old: object, new: Mapping[str, Any] | None) -> None:
        if self._catalog.apply_capsule(key, new):
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
        if tenancy_labels_changed(_labels(old), _labels(new), self._catalog.label_keys):
            self._bump()

    def _tenancy_changed(self, stamped: bool = True) -> None:
        # The resources to list again are marked before the bump wakes anyone.
        self._follow_rules()
        self._bump(stamped)

    def _follow_rules(self) -> None:
        """Index what the current rules read."""
        self._resources.follow(projection_needs(self.tenants()))

    def _note_ready(self) -> None:
        self._ready = self._ready or self._current()


def _same(fresh: frozenset[str], before: frozenset[str] | None) -> frozenset[str]:
    return before if before is not None and before == fresh else fresh


def _labels(namespace: Projection | None) -> Mapping[str, str] | None:
    return None if namespace is None else namespace.get("metadata", {}).get("labels", {})
