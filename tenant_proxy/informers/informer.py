"""A minimal informer: list, then watch from the list's resourceVersion, forever.

Reads with the proxy's own credentials through the shared upstream session (one credential
path, one TLS configuration, raw orjson rather than typed models: 100,000 objects must fit in a
small index). Each object is kept only as the `project`ion the index needs.
Resumes from the last resourceVersion seen (bookmarks included), relists on 410 Expired, backs
off exponentially on errors, and treats a 404 list (CRD not installed) as an empty set.
`reproject` reads everything again when the index comes to need other fields.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote

import aiohttp
import orjson

from tenant_proxy.kube.lines import LineFramer, LineTooLong
from tenant_proxy.upstream import Upstream, UpstreamError

log = logging.getLogger("tenant_proxy.informer")

T = TypeVar("T")
# The longest watch event line an informer frames (limits.max_watch_event_bytes).
MAX_EVENT_BYTES = 32 * 1024 * 1024
Project = Callable[[Mapping[str, Any]], T]
OnChange = Callable[[str, "T | None", "T | None"], None]


def _revision(obj: Mapping[str, Any]) -> int | None:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(value) if value else None
    except (TypeError, ValueError):
        return None


def _number(rv: object) -> int:
    try:
        return int(str(rv))
    except ValueError:
        return 0


class Whole(Protocol):
    """Who keeps the whole objects (the watch cache), beside the projections in `store`: it
    is given each object with its projection, which it may share rather than copy. A list's
    items are handed over page by page (`keep`), so that no more than a page is ever decoded
    at once, then the list as kept (`listed`)."""

    def keep(
        self, item: Mapping[str, Any], projection: Any, kind: str, api_version: str
    ) -> Any: ...

    def listed(
        self,
        items: Mapping[str, Any],
        rv: int,
        versions: Mapping[str, int],
        kind: str,
        api_version: str,
    ) -> None: ...

    def event(
        self, kind: str, obj: Mapping[str, Any], projection: Any, rv: int, size: int
    ) -> None: ...

    def progress(self, rv: int) -> None: ...


class _Shared(dict[str, Any]):
    """A part of projections held once for every projection that has an equal one."""

    __slots__ = ("__weakref__",)


class Interner:
    """Projections made compact: equal parts (label sets, `spec: {claimRef: {namespace}}`)
    are one dict, repeated strings one string.

    Most objects of a resource share labels (a zone, an app) and the fields rules read (the
    namespace a claim is in): kept once, 100,000 projections take half the memory. An object's
    own metadata holds its unique name, so it is not shared itself (nor is the name interned:
    that would only cost an entry in the interpreter's table). Projections are never changed
    once made, so sharing is safe; a part no projection holds any more is freed.
    """

    def __init__(self) -> None:
        # By hash, checked for equality: a key holding the part would cost what sharing saves.
        self._parts: weakref.WeakValueDictionary[int, _Shared] = weakref.WeakValueDictionary()

    def __call__(self, projection: T) -> T:
        if isinstance(projection, dict):
            for key, value in projection.items():
                if key == "metadata" and isinstance(value, dict):
                    self._inside(value, keep_name=True)
                else:
                    projection[key] = self._part(value)
        return projection

    def _inside(self, node: dict[str, Any], keep_name: bool = False) -> None:
        for key, value in node.items():
            if not (keep_name and key == "name"):
                node[key] = self._part(value)

    def _part(self, value: Any) -> Any:
        if type(value) is str:
            return sys.intern(value)
        if type(value) is not dict:
            return value
        # The API server writes maps with sorted keys: equal parts come in the same order.
        parts: list[tuple[str, Any]] = []
        for key, inner in value.items():
            inner = value[key] = self._part(inner)
            parts.append((key, id(inner) if type(inner) is _Shared else inner))
        try:
            digest = hash(tuple(parts))
        except TypeError:
            return value  # a list or another unhashable value: kept as it is
        shared = self._parts.get(digest)
        if shared is None:
            shared = self._parts[digest] = _Shared(value)
        return shared if shared == value else value


class _Expired(Exception):
    """The resourceVersion we watch from is gone: relist."""


def _resource(path: str) -> str:
    """`persistentvolumes`, `storageclasses.storage.k8s.io`: as kubectl names a resource."""
    parts = path.strip("/").split("/")
    return f"{parts[-1]}.{parts[1]}" if parts[0] == "apis" and len(parts) > 3 else parts[-1]


def denial(verb: str, path: str, status: int, doc: Any) -> str:
    """Why the API server refused the proxy's read, in one line (its Status message if any)."""
    message = doc.get("message") if isinstance(doc, dict) else None
    return f"the proxy may not {verb} {_resource(path)}: {message or f'HTTP {status}'}"


def object_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


async def _status(resp: aiohttp.ClientResponse) -> Any:
    """The Status a refusal carries, if it can be read (it names who may not do what)."""
    try:
        return orjson.loads(await resp.read())
    except (aiohttp.ClientError, orjson.JSONDecodeError):
        return None


class Informer(Generic[T]):
    """Keeps `store` (key -> projection) in step with one resource collection."""

    def __init__(
        self,
        upstream: Upstream,
        path: str,
        project: Project[T],
        on_change: OnChange[T] | None = None,
        *,
        page_size: int = 500,
        max_event_bytes: int = MAX_EVENT_BYTES,
        min_backoff: float = 0.2,
        max_backoff: float = 10.0,
        on_listed: Callable[[], None] | None = None,
        on_denied: Callable[[], None] | None = None,
        whole: Whole | None = None,
    ) -> None:
        self.path = path
        self._whole = whole
        self.store: dict[str, T] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""
        self._upstream, self._project, self._on_change = upstream, project, on_change
        self._interned = Interner()
        self._page_size, self._max_event = page_size, max_event_bytes
        self._min_backoff, self._max_backoff = min_backoff, max_backoff
        self._task: asyncio.Task[None] | None = None
        self._on_listed = on_listed
        self.relists = 0
        # Why the API server refuses this informer's reads (401/403), None once it lists or
        # watches again: readiness and filtered reads report it instead of waiting.
        self.access_error: str | None = None
        self._on_denied = on_denied

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"informer {self.path}"
        )

    def reproject(self, project: Project[T]) -> None:
        """Project every object with `project` from now on, and list again at once so the store
        holds only such projections; `on_listed` says when it does.

        The store keeps the old projections until the new list replaces them whole. The run
        is restarted rather than told: a list in flight holds objects projected the old way.
        """
        self._project = project
        if self._task is not None:
            self.cancel()
            self.start()

    def cancel(self) -> None:
        """Stop listing and watching; `stop` also waits for it."""
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> None:
        if self._task is not None:
            self.cancel()
            # Bounded: a stop must not hang on a connection that ignores the cancellation.
            await asyncio.wait([self._task], timeout=2)

    async def _run(self) -> None:
        backoff = self._min_backoff
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                    self.relists += 1
                await self._watch()
                backoff = self._min_backoff  # a clean end (timeout): re-watch at once
            except _Expired:
                need_list = True
            except LineTooLong as exc:
                # Watched again from the same version, the same event would come again, and
                # again: a list (read page by page, not line by line) moves past it instead.
                log.warning("informer %s: %s; listing again", self.path, exc)
                need_list = True
            except (UpstreamError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("informer %s: %s; retrying in %.1fs", self.path, exc, backoff)
                await asyncio.sleep(backoff)  # backoff before retrying the API server
                backoff = min(backoff * 2, self._max_backoff)

    async def _list(self) -> None:
        fresh: dict[str, T] = {}
        revisions: dict[str, int | None] = {}
        whole: dict[str, Any] = {}
        kind = api_version = ""
        token = ""
        while True:
            query = f"limit={self._page_size}" + (f"&continue={quote(token)}" if token else "")
            status, doc = await self._upstream.json_call("GET", f"{self.path}?{query}")
            if status == 404:
                doc = {"items": [], "metadata": {"resourceVersion": ""}}
            elif status == 410:
                token = ""  # the snapshot expired mid-pagination: start over
                fresh.clear()
                revisions.clear()
                whole.clear()
                continue
            elif status != 200:
                if status in (401, 403):
                    self._denied(denial("list", self.path, status, doc))
                raise UpstreamError(f"list {self.path}: HTTP {status}")
            list_kind = str(doc.get("kind") or "")
            kind = list_kind.removesuffix("List") or kind
            api_version = str(doc.get("apiVersion") or "") or api_version
            for item in doc.get("items") or []:
                key = object_key(item)
                fresh[key] = projection = self._interned(self._project(item))
                revisions[key] = _revision(item)
                if self._whole is not None:
                    whole[key] = self._whole.keep(item, projection, kind, api_version)
            token = (doc.get("metadata") or {}).get("continue") or ""
            if not token:
                self.resource_version = (doc.get("metadata") or {}).get("resourceVersion", "")
                break
        self.access_error = None
        self._replace(fresh)
        if self._whole is not None:
            versions = {k: v for k, v in revisions.items() if v is not None}
            self._whole.listed(whole, _number(self.resource_version), versions, kind, api_version)
        self.synced.set()
        if self._on_listed is not None:
            self._on_listed()

    def _replace(self, fresh: dict[str, T]) -> None:
        old = self.store
        self.store = fresh
        for key in old.keys() - fresh.keys():
            self._notify(key, old[key], None)
        for key, value in fresh.items():
            if old.get(key) != value:
                self._notify(key, old.get(key), value)

    def _notify(self, key: str, old: T | None, new: T | None) -> None:
        """Tell the owner; its failure must not stop the informer halfway through a change."""
        if self._on_change is None:
            return
        try:
            self._on_change(key, old, new)
        except Exception:
            log.exception("informer %s: handling the change of %s failed", self.path, key)

    async def _watch(self) -> None:
        if not self.resource_version:
            # Nothing to resume from (the resource is not served yet): list again later.
            await asyncio.sleep(self._max_backoff)  # poll for a CRD being installed
            raise _Expired
        query = (
            f"watch=1&allowWatchBookmarks=true&resourceVersion={self.resource_version}"
            "&timeoutSeconds=300"
        )
        resp = await self._upstream.send(
            "GET", self._upstream.url(self.path, query), [("Accept", "application/json")]
        )
        try:
            if resp.status == 410:
                raise _Expired
            if resp.status in (401, 403):
                self._denied(denial("watch", self.path, resp.status, await _status(resp)))
            if resp.status != 200:
                raise UpstreamError(f"watch {self.path}: HTTP {resp.status}")
            self.access_error = None
            framer = LineFramer(self._max_event)
            async for chunk in resp.content.iter_any():
                for line in framer.feed(chunk):
                    self._apply(orjson.loads(line), len(line))
        finally:
            resp.close()  # a watch is never reused: drop its connection at once

    def _denied(self, reason: str) -> None:
        self.access_error = reason
        if self._on_denied is not None:
            self._on_denied()

    def _store_change(self, key: str, obj: Mapping[str, Any] | None) -> T | None:
        """Record an object's new state (None: deleted) and report it if the projection
        moved; its projection now."""
        old = self.store.get(key)
        new: T | None = None
        if obj is None:
            self.store.pop(key, None)
        else:
            new = self.store[key] = self._interned(self._project(obj))
        if old != new:
            self._notify(key, old, new)
        return new

    def _apply(self, event: Mapping[str, Any], size: int = 0) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Expired
            raise UpstreamError(f"watch {self.path}: {obj.get('message', 'error event')}")
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self.resource_version = rv
        if kind == "BOOKMARK":
            if self._whole is not None:
                self._whole.progress(_number(rv))
            return
        projection = self._store_change(object_key(obj), None if kind == "DELETED" else obj)
        if self._whole is not None and kind in ("ADDED", "MODIFIED", "DELETED"):
            # After the index has heard it: a tenancy change this event causes goes with it.
            self._whole.event(str(kind), obj, projection, _number(rv), size)
