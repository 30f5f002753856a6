"""The watch cache's edge: each filtered resource's timeline, fed by the index's informer for it
(one upstream list + watch per resource, whatever the number of tenant watches), with tenancy
changes folded in as the index reports them.

A tenancy change is recorded at once when it comes from the very event being recorded (a
namespace relabelled: one entry, as a selector transition), else at the end of the current
turn of the event loop, so a burst of changes (an informer's re-list) costs one entry.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping

from tenant_proxy.gc_pauses import wake_without_collection
from tenant_proxy.tenancy.model import GroupResource
from tenant_proxy.tenancy.snapshot import TenancySnapshot
from tenant_proxy.watchcache.timeline import Obj, Timeline

log = logging.getLogger("tenant_proxy.watchcache")

Tenancy = Callable[[], TenancySnapshot]
"""The tenancy in force now (the index's current snapshot)."""
CauseVersion = Callable[[], int | None]
"""The resourceVersion of the latest tenancy input the index has seen."""


class ResourceCache:
    """One resource's timeline and the watches waiting on it."""

    def __init__(
        self,
        gr: GroupResource,
        path: str,
        tenancy: Tenancy,
        cause_version: CauseVersion,
        *,
        max_entries: int,
        max_bytes: int,
        on_progress: Callable[[], None] = lambda: None,
    ) -> None:
        self.gr, self.path = gr, path
        self._on_progress = on_progress
        self.timeline: Timeline[TenancySnapshot] | None = None
        self.kind, self.api_version = "", ""
        self._tenancy, self._cause_version = tenancy, cause_version
        self._max_entries, self._max_bytes = max_entries, max_bytes
        self._pending = False
        self._moved = asyncio.Event()
        self.closed = False
        # Set while no informer feeds it (its rule gone): closed when it fires.
        self.retirement: asyncio.TimerHandle | None = None

    def serves(self, api_version: str) -> bool:
        """Whether requests at `api_version` may be answered from this cache: it holds the
        objects in the version its informer reads (another version is the API server's to
        serve, or to refuse)."""
        return self.path.rstrip("/").split("/")[-2] == api_version

    # -- fed by the informer ------------------------------------------------------------------
    def listed(
        self, items: Mapping[str, Obj], rv: int, versions: Mapping[str, int], kind: str, api: str
    ) -> None:
        """A (re-)list at `rv`: the first one fills the timeline, later ones add their
        difference from what it holds as changes, so open watches see transitions."""
        self.kind, self.api_version = kind or self.kind, api or self.api_version
        if self.timeline is None:
            self._pending = False
            self.timeline = Timeline(
                dict(items),
                rv,
                self._tenancy(),
                max_entries=self._max_entries,
                max_bytes=self._max_bytes,
            )
        else:
            self._flush()
            if self.timeline.replace_all(items, rv, versions):
                log.info("%s re-listed at %d: its difference is replayed to watches", self.gr, rv)
        self._wake()

    def event(self, kind: str, obj: Obj, rv: int, size: int) -> None:
        """An upstream watch event (ADDED/MODIFIED/DELETED) at `rv`."""
        timeline = self.timeline
        if timeline is None:
            return  # not listed yet: the list will bring it
        name = (obj.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not name:
            return
        if not self.kind:
            self.kind, self.api_version = str(obj.get("kind", "")), str(obj.get("apiVersion", ""))
        # A tenancy change still pending was caused by this very event (the index heard it
        # first, in the same step): both take effect at once.
        tenancy = self._tenancy() if self._pending else None
        self._pending = False
        cur = None if kind == "DELETED" else obj
        timeline.change(name, cur, rv, size + _held_by(tenancy), tenancy)
        self._wake()

    def progress(self, rv: int) -> None:
        """A bookmark: nothing changed up to `rv`."""
        if self.timeline is not None:
            self._flush()
            self.timeline.progress(rv)
            self._on_progress()

    def settle(self) -> None:
        """Record a tenancy change still pending, so a read judges what a watch will."""
        if self._flush():
            self._wake()

    # -- told by the index --------------------------------------------------------------------
    def tenancy_moved(self) -> None:
        if self._pending or self.timeline is None:
            return
        self._pending = True
        asyncio.get_running_loop().call_soon(self._flush_and_wake)

    def _flush_and_wake(self) -> None:
        if self._flush():
            self._wake()

    def _flush(self) -> bool:
        if not self._pending or self.timeline is None:
            return False
        self._pending = False
        tenancy = self._tenancy()
        entry = self.timeline.retarget(tenancy, self._cause_version(), _held_by(tenancy))
        return entry is not None

    # -- read by watches ----------------------------------------------------------------------
    async def wait_beyond(self, seq: int, stop: Callable[[], bool] = lambda: False) -> None:
        """Return once the timeline has an entry at `seq` or later, the cache closed, or
        `stop()` says so when woken (`nudge`)."""
        while (
            not self.closed and not stop() and (self.timeline is None or self.timeline.end <= seq)
        ):
            await self._moved.wait()

    def nudge(self) -> None:
        """Wake every watch waiting on this cache, to look at its own state."""
        self._wake()

    def close(self) -> None:
        """No rule filters this resource any more: wake its watches so they end."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        woken, self._moved = self._moved, asyncio.Event()
        wake_without_collection(woken)
        self._on_progress()


def _held_by(tenancy: TenancySnapshot | None) -> int:
    """About what a tenancy snapshot kept in the window costs: its map of each tenant's
    namespaces (the sets themselves are shared between generations)."""
    return 0 if tenancy is None else 128 * (len(tenancy.tenants) + len(tenancy.own))


class WatchCaches:
    """Every filtered resource's cache; the index opens and closes them with its informers."""

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        retired_seconds: float = 60.0,
    ) -> None:
        self._caches: dict[GroupResource, ResourceCache] = {}
        self._grace = retired_seconds
        self._tenancy: Tenancy | None = None
        self._cause_version: CauseVersion = lambda: None
        self._max_entries, self._max_bytes = max_entries, max_bytes
        self._progress = asyncio.Event()
        # Positions in these timelines mean something only to this process.
        self.instance = secrets.token_hex(8)

    def bind(self, tenancy: Tenancy, cause_version: CauseVersion) -> None:
        """Where tenancy comes from (the index, which is built after the caches)."""
        self._tenancy, self._cause_version = tenancy, cause_version

    def open(self, gr: GroupResource, path: str) -> ResourceCache:
        """The cache of `gr`, served at `path` (its collection), new or kept: a re-projected
        informer lists again into the same cache, and watches see only the difference."""
        cache = self._caches.get(gr)
        if cache is not None and cache.path == path:
            self._keep(cache)
            return cache
        if cache is not None:
            self._keep(cache)
            cache.close()  # another version of the resource: its watches re-watch
        assert self._tenancy is not None, "bind() the index first"
        cache = self._caches[gr] = ResourceCache(
            gr,
            path,
            self._tenancy,
            self._cause_version,
            max_entries=self._max_entries,
            max_bytes=self._max_bytes,
            on_progress=self._note_progress,
        )
        return cache

    def close(self, gr: GroupResource) -> None:
        """No rule reads `gr` any more (its informer stops). The cache is kept a while: rules
        often change in steps (a reload, then a Tenant CR), and a resource read again soon
        lists into the same timeline, so open and resuming watches go on where they were."""
        cache = self._caches.get(gr)
        if cache is not None and cache.retirement is None:
            cache.retirement = asyncio.get_running_loop().call_later(
                self._grace, self._expire, gr, cache
            )

    def _keep(self, cache: ResourceCache) -> None:
        if cache.retirement is not None:
            cache.retirement.cancel()
            cache.retirement = None

    def _expire(self, gr: GroupResource, cache: ResourceCache) -> None:
        if self._caches.get(gr) is cache:
            del self._caches[gr]
            cache.close()

    def get(self, gr: GroupResource) -> ResourceCache | None:
        return self._caches.get(gr)

    def tenancy_moved(self) -> None:
        for cache in self._caches.values():
            cache.tenancy_moved()

    async def reach(self, gr: GroupResource, rv: int, within: float) -> bool:
        """Whether `gr`'s cache has heard its upstream stream up to `rv` (an event or a
        bookmark at `rv` or later) within `within` seconds. Only its own stream counts: another
        resource's bookmark says nothing of events of this one still on their way."""
        cache = self._caches.get(gr)

        def reached() -> bool:
            return cache is not None and cache.timeline is not None and cache.timeline.heard >= rv

        try:
            async with asyncio.timeout(within):
                while not reached():
                    await self._progress.wait()
        except TimeoutError:
            return False
        return True

    def _note_progress(self) -> None:
        woken, self._progress = self._progress, asyncio.Event()
        woken.set()
