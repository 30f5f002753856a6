"""The watch cache's edge: each filtered resource's timeline, fed by the index's informer for it
(one upstream list + watch per resource, whatever the number of tenant watches), with tenancy
changes folded in as the index reports them.

Each object is kept as bytes plus the projection the index made of it (`stored`), which must
hold every field the rules read: the cache widens the fields it requires as rules come to read
more, and projects an object itself when the index's projection lacks one (the index re-lists
for it later; until then, and for older states in the window, the cache's own projection
judges).

A tenancy change is recorded at once when it comes from the very event being recorded (a
namespace relabelled: one entry, as a selector transition), else at the end of the current
turn of the event loop, so a burst of changes (an informer's re-list) costs one entry.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from tenant_proxy.gc_pauses import wake_without_collection
from tenant_proxy.kube.resources import GroupResource
from tenant_proxy.tenancy.ownership import field_value
from tenant_proxy.tenancy.projection import FieldPath, project, projection_needs
from tenant_proxy.tenancy.snapshot import TenancySnapshot
from tenant_proxy.watchcache.stored import NO_HEAD, Head, Stored, View, compact
from tenant_proxy.watchcache.timeline import Obj, Timeline
from tenant_proxy.watchcache.waiters import Waiters

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
        self._unstamped = False  # a pending change came from no API event
        self._waiting = Waiters()
        self._head = NO_HEAD
        # The fields every kept projection holds: all that any tenancy seen here read.
        self._paths: frozenset[FieldPath] = frozenset()
        self._paths_of: TenancySnapshot | None = None
        self.closed = False
        # Set while no informer feeds it (its rule gone): closed when it fires.
        self.retirement: asyncio.TimerHandle | None = None

    def serves(self, api_version: str) -> bool:
        """Whether requests at `api_version` may be answered from this cache: it holds the
        objects in the version its informer reads (another version is the API server's to
        serve, or to refuse)."""
        return self.path.rstrip("/").split("/")[-2] == api_version

    # -- fed by the informer ------------------------------------------------------------------
    def keep(self, item: Mapping[str, Any], view: View, kind: str, api: str) -> Obj:
        """A listed item as the cache keeps it, judged on `view` (the index's projection)."""
        if (kind, api) != self._head:
            self._learn(kind, api)
        self._cover(self._tenancy())
        return self._kept(item, view)

    def listed(
        self, items: Mapping[str, Obj], rv: int, versions: Mapping[str, int], kind: str, api: str
    ) -> None:
        """A (re-)list at `rv` of items made by `keep`: the first one fills the timeline,
        later ones add their difference from what it holds as changes, so open watches see
        transitions."""
        self._learn(kind or self.kind, api or self.api_version)
        self._cover(self._tenancy())
        kept = {obj.name: obj for obj in items.values()}
        if self.timeline is None:
            self._pending = False
            self.timeline = Timeline(
                kept,
                rv,
                self._tenancy(),
                max_entries=self._max_entries,
                max_bytes=self._max_bytes,
            )
        else:
            self._flush()
            if self.timeline.replace_all(kept, rv, versions):
                log.info("%s re-listed at %d: its difference is replayed to watches", self.gr, rv)
        self._wake()

    def event(
        self, kind: str, obj: Mapping[str, Any], view: View | None, rv: int, size: int
    ) -> None:
        """An upstream watch event (ADDED/MODIFIED/DELETED) at `rv`, with the index's
        projection of the object (None: deleted)."""
        timeline = self.timeline
        if timeline is None:
            return  # not listed yet: the list will bring it
        name = (obj.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not name:
            return
        if not self.kind:
            self._learn(str(obj.get("kind", "")), str(obj.get("apiVersion", "")))
        # A tenancy change still pending was caused by this very event (the index heard it
        # first, in the same step): both take effect at once.
        tenancy = self._tenancy() if self._pending else None
        self._pending = False
        if tenancy is not None:
            self._cover(tenancy)
        cur = None if kind == "DELETED" or view is None else self._kept(obj, view)
        timeline.change(name, cur, rv, size + _held_by(tenancy), tenancy)
        self._wake()

    def _learn(self, kind: str, api_version: str) -> None:
        self.kind, self.api_version = kind, api_version
        if (kind, api_version) != self._head:
            self._head = Head(kind, api_version)

    def _kept(self, obj: Mapping[str, Any], view: View) -> Obj:
        """`obj` as kept: its bytes, and the index's projection when it holds every field the
        rules read (shared, not copied), else the cache's own."""
        if any(field_value(view, p) != field_value(obj, p) for p in self._paths):
            view = project(obj, self._paths)
        own = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
        rv = (own.get("metadata") or {}).get("resourceVersion")
        return Stored(compact(own), view, _number(rv), self._head)

    def _cover(self, tenancy: TenancySnapshot) -> None:
        """Widen the fields kept projections hold to what `tenancy`'s rules read; when it
        reads a new one, project every kept object again (rare: a rule on a new field)."""
        if tenancy is self._paths_of:
            return
        self._paths_of = tenancy
        needs = projection_needs(tenancy.tenants).get(self.gr, frozenset())
        if needs <= self._paths:
            return
        self._paths |= needs
        if self.timeline is not None:
            count = 0
            for obj in self.timeline.held():
                obj.view = project(obj.decoded(), self._paths)
                count += 1
            log.info("%s: %d objects projected again for a new rule field", self.gr, count)

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
    def tenancy_moved(self, stamped: bool = True) -> None:
        """Tenancy changed; `stamped`: by an API event (else a reload, or what a re-list
        revealed), whose version says nothing of where it stands in this timeline."""
        if self.timeline is None:
            return
        self._unstamped = self._unstamped or not stamped
        if self._pending:
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
        self._cover(tenancy)
        cause = None if self._unstamped else self._cause_version()
        self._unstamped = False
        entry = self.timeline.retarget(tenancy, cause, _held_by(tenancy))
        return entry is not None

    # -- read by watches ----------------------------------------------------------------------
    async def wait_beyond(
        self, seq: int, stop: Callable[[], bool] = lambda: False, seconds: float = math.inf
    ) -> bool:
        """Whether, within `seconds`, the timeline came to have an entry at `seq` or later, the
        cache closed, or `stop()` said so when woken (`nudge`)."""
        waiting = self._waiting
        alarm = waiting.alarm(seconds)
        while (
            not self.closed and not stop() and (self.timeline is None or self.timeline.end <= seq)
        ):
            # Awaited here, not in a coroutine of the waiters': one frame less held per watch.
            woken = waiting.arm(alarm)
            if woken is None:
                return False
            try:
                if not await woken:
                    return False
            finally:
                waiting.disarm(woken, alarm)
        return True

    def nudge(self) -> None:
        """Wake every watch waiting on this cache, to look at its own state."""
        self._wake()

    def close(self) -> None:
        """No rule filters this resource any more: wake its watches so they end."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        wake_without_collection(self._waiting)
        self._on_progress()


def _number(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


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

    def tenancy_moved(self, stamped: bool = True) -> None:
        for cache in self._caches.values():
            cache.tenancy_moved(stamped)

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
