"""The versioned in-memory store: objects, a global resourceVersion, event history, watchers.

One counter numbers every write, as etcd's revision does. Each resource keeps a bounded window
of its recent events; the state at any resourceVersion still covered by the window is rebuilt
by undoing newer events, which gives consistent list pages and exact-version lists without
keeping snapshots. Watchers get events through bounded queues so a slow reader never blocks a
writer: it overflows and its watch is closed, as the real watch cache does.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, overload

from tenant_proxy.emulator.types import KubeObject

ResourceKey = tuple[str, str]
"""(group, plural): the store keeps one copy of a resource whatever version serves it."""


class StoreView(Protocol):
    """Read-only access for the other emulator parts (RBAC, reviews). Do not mutate results."""

    def list_objects(
        self, group: str, plural: str, namespace: str | None = None
    ) -> list[KubeObject]: ...

    def get_object(
        self, group: str, plural: str, namespace: str, name: str
    ) -> KubeObject | None: ...


@dataclass(frozen=True)
class Event:
    """One write. `obj` is the new state (for DELETED the last state, at the delete's rv)."""

    type: str
    rv: int
    obj: KubeObject
    prev: KubeObject | None


class TooOld(Exception):
    """The asked resourceVersion is older than the history window (compacted)."""

    def __init__(self, asked: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {asked} ({oldest})")
        self.asked = asked
        self.oldest = oldest


CUT = "CUT"
OVERFLOW = "OVERFLOW"


class Watcher:
    """A watch's inbox: events, or a final CUT / OVERFLOW marker."""

    def __init__(self, key: ResourceKey, maxsize: int) -> None:
        self.key = key
        self.queue: asyncio.Queue[Event | str] = asyncio.Queue(maxsize)
        self.closed = False

    def offer(self, event: Event) -> None:
        if self.closed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.close(OVERFLOW)

    def close(self, marker: str) -> None:
        if self.closed:
            return
        self.closed = True
        while self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(marker)


def object_key(obj: KubeObject) -> str:
    """The key under the resource's prefix, as etcd orders it: `namespace/name` or `name`."""
    meta = obj["metadata"]
    ns = meta.get("namespace") or ""
    return f"{ns}/{meta['name']}" if ns else str(meta["name"])


def _with_rv(obj: KubeObject, rv: int) -> KubeObject:
    return {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(rv)}}


class Store:
    """Objects per resource, the global resourceVersion, per-resource history and watchers."""

    def __init__(self, history_window: int = 1000, watch_queue: int = 1000) -> None:
        self._rv = 0
        self._objects: dict[ResourceKey, dict[str, KubeObject]] = {}
        self._sorted: dict[ResourceKey, list[str]] = {}
        self._history: dict[ResourceKey, deque[Event]] = {}
        self._floor: dict[ResourceKey, int] = {}
        self._compacted = 0
        self._watchers: dict[ResourceKey, set[Watcher]] = {}
        self._window = history_window
        self._watch_queue = watch_queue
        self.on_unwatch: list[Callable[[Watcher], None]] = []
        """Called when a watch ends (tests use it to see idle watches released)."""

    # --- reads --------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    def _keys(self, res: ResourceKey) -> list[str]:
        keys = self._sorted.get(res)
        if keys is None:
            keys = sorted(self._objects.get(res, {}))
            self._sorted[res] = keys
        return keys

    def list_objects(
        self, group: str, plural: str, namespace: str | None = None
    ) -> list[KubeObject]:
        res = (group, plural)
        objects = self._objects.get(res, {})
        keys = self._keys(res)
        if namespace:
            prefix = namespace + "/"
            return [objects[k] for k in keys if k.startswith(prefix)]
        return [objects[k] for k in keys]

    def in_key_order(
        self, group: str, plural: str, namespace: str | None = None
    ) -> Sequence[KubeObject]:
        """The objects in key order, read as etcd's range read reads them: a page touches
        the objects it returns, not the whole collection (what `limit=1` costs depends on it)."""
        res = (group, plural)
        keys = self._keys(res)
        lo, hi = 0, len(keys)
        if namespace:
            # namespace/name keys of one namespace are contiguous: "/" sorts before "0".
            lo = bisect.bisect_left(keys, namespace + "/")
            hi = bisect.bisect_left(keys, namespace + "0")
        return _InKeyOrder(self._objects.get(res, {}), keys, lo, hi)

    def get_object(self, group: str, plural: str, namespace: str, name: str) -> KubeObject | None:
        key = f"{namespace}/{name}" if namespace else name
        return self._objects.get((group, plural), {}).get(key)

    def oldest_rv(self, group: str, plural: str) -> int:
        """Lists and watches at a resourceVersion below this are compacted (410)."""
        return max(self._floor.get((group, plural), 0), self._compacted)

    def state_at(self, group: str, plural: str, namespace: str | None, rv: int) -> list[KubeObject]:
        """The resource's objects as they were at `rv`, in key order; raises TooOld."""
        res = (group, plural)
        if rv < self.oldest_rv(group, plural):
            raise TooOld(rv, self.oldest_rv(group, plural))
        if rv >= self._rv:
            return self.list_objects(group, plural, namespace)
        state = dict(self._objects.get(res, {}))
        for event in reversed(self._history.get(res, ())):
            if event.rv <= rv:
                break
            key = object_key(event.obj)
            if event.type == "ADDED" or event.prev is None:
                state.pop(key, None)
            else:
                state[key] = event.prev
        prefix = f"{namespace}/" if namespace else ""
        return [state[k] for k in sorted(state) if k.startswith(prefix)]

    def events_since(self, group: str, plural: str, rv: int) -> list[Event]:
        """Events after `rv` still in the window; raises TooOld if some were dropped."""
        oldest = self.oldest_rv(group, plural)
        if rv < oldest:
            raise TooOld(rv, oldest)
        return [e for e in self._history.get((group, plural), ()) if e.rv > rv]

    # --- writes -------------------------------------------------------------------------------

    def _record(self, res: ResourceKey, event: Event) -> None:
        history = self._history.setdefault(res, deque())
        if len(history) >= self._window:
            self._floor[res] = history.popleft().rv
        history.append(event)
        for watcher in list(self._watchers.get(res, ())):
            watcher.offer(event)

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def put(self, group: str, plural: str, obj: KubeObject) -> KubeObject:
        """Create or replace `obj` (the caller has validated it); returns it with its new rv."""
        res = (group, plural)
        stored = _with_rv(obj, self._next_rv())
        key = object_key(stored)
        objects = self._objects.setdefault(res, {})
        prev = objects.get(key)
        objects[key] = stored
        if prev is None:
            self._sorted.pop(res, None)
        self._record(res, Event("MODIFIED" if prev else "ADDED", self._rv, stored, prev))
        return stored

    def remove(self, group: str, plural: str, namespace: str, name: str) -> KubeObject | None:
        """Delete the object; returns its last state at the delete's rv (None if absent)."""
        res = (group, plural)
        key = f"{namespace}/{name}" if namespace else name
        prev = self._objects.get(res, {}).pop(key, None)
        if prev is None:
            return None
        self._sorted.pop(res, None)
        final = _with_rv(prev, self._next_rv())
        self._record(res, Event("DELETED", self._rv, final, prev))
        return final

    # --- watchers -----------------------------------------------------------------------------

    def watch(self, group: str, plural: str) -> Watcher:
        watcher = Watcher((group, plural), self._watch_queue)
        self._watchers.setdefault((group, plural), set()).add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.get(watcher.key, set()).discard(watcher)
        for hook in self.on_unwatch:
            hook(watcher)

    def watchers(self) -> Iterable[Watcher]:
        for group in self._watchers.values():
            yield from group

    def cut_watches(self) -> int:
        """Close every open watch as a restarting server would; returns how many."""
        watchers = list(self.watchers())
        for watcher in watchers:
            watcher.close(CUT)
        return len(watchers)

    def compact(self) -> None:
        """Drop all history: every resourceVersion before now becomes too old."""
        self._compacted = self._rv
        self._history.clear()
        self._floor.clear()


class _InKeyOrder(Sequence[KubeObject]):
    """A lazy view of one resource's objects between two positions of its sorted keys."""

    def __init__(self, objects: dict[str, KubeObject], keys: list[str], lo: int, hi: int) -> None:
        self._objects, self._keys, self._lo, self._hi = objects, keys, lo, hi

    def __len__(self) -> int:
        return self._hi - self._lo

    @overload
    def __getitem__(self, index: int) -> KubeObject: ...

    @overload
    def __getitem__(self, index: slice) -> list[KubeObject]: ...

    def __getitem__(self, index: int | slice) -> KubeObject | list[KubeObject]:
        if isinstance(index, slice):
            return [
                self._objects[self._keys[self._lo + i]] for i in range(*index.indices(len(self)))
            ]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self._objects[self._keys[self._lo + index % len(self)]]
