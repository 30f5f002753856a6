"""Serving a filtered watch from the watch cache: no upstream connection per watch.

A watch is a cursor in its resource's timeline (watchcache.timeline). It starts where the
client stands: with initial ADDED events when it asked for none or for "0" (or
`sendInitialEvents`), else just after the resourceVersion it holds (410 when the window no
longer reaches it, as the cacher answers). Each entry becomes the client's events
(watchcache.replay), shaped as the client asked (object, PartialObjectMetadata, Table row), on
a chunked stream or WebSocket messages (watch_sinks).

A client too slow to keep up falls behind the window and gets the cacher's 410 ERROR; nothing
is queued for it, so memory never grows with a slow reader. With `allowWatchBookmarks`, a
BOOKMARK follows the start, every tenancy change that showed the client objects with older
resourceVersions (so that it resumes from the change, not from an object's own version), and
every `bookmark_seconds` of quiet.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tenant_proxy import status
from tenant_proxy.filtering.forms import Keep, partial_metadata
from tenant_proxy.filtering.selectors import SelectorError, parse_selector
from tenant_proxy.filtering.shape import Shape
from tenant_proxy.identity import Identity
from tenant_proxy.observability.metrics import Metrics
from tenant_proxy.requestinfo import RequestInfo, field_terms
from tenant_proxy.streams import OpenStreams
from tenant_proxy.tenancy.model import GroupResource, field_value
from tenant_proxy.tenancy.snapshot import TenancySnapshot
from tenant_proxy.watch_sinks import EventSink, check_handshake, open_sink, wants_websocket
from tenant_proxy.watchcache.ages import age_columns, with_ages
from tenant_proxy.watchcache.cache import ResourceCache, WatchCaches
from tenant_proxy.watchcache.listing import META_V1
from tenant_proxy.watchcache.replay import (
    ADDED,
    Out,
    Side,
    events_for,
    initial,
    side_of,
    stamped,
)
from tenant_proxy.watchcache.rows import RowBook, Rows
from tenant_proxy.watchcache.timeline import Change, TooOld

log = logging.getLogger("tenant_proxy.watch")

# As kube-apiserver: a watch without timeoutSeconds lasts minRequestTimeout (1800 s) times a
# random factor in [1, 2), so reconnections spread out.
_MIN_REQUEST_TIMEOUT = 1800.0
_TOO_SLOW = "the watch client is too slow"
_FELL_BEHIND = "the watch fell behind the cache's window: too old resource version"


@dataclass(frozen=True)
class WatchRequest:
    """What a watch asks, read from its query. Pure."""

    resume_from: int | None  # a resourceVersion to continue after; None: start with the state
    initial_events_end: bool  # sendInitialEvents: mark the end of the initial events
    bookmarks: bool
    timeout: float
    selected: Keep


def read_watch_request(
    info: RequestInfo, draw: Callable[[], float] = random.random
) -> WatchRequest:
    """The watch `info` asks for; a Status for what the API server would refuse."""
    q = info.query
    rv_text = q.resource_version or ""
    send_initial = bool(q.send_initial_events)
    resume_from = None
    if rv_text not in ("", "0") and not send_initial:
        if not rv_text.isdigit():
            raise status.bad_request(f"invalid resource version: {rv_text}")
        resume_from = int(rv_text)
    timeout = float(q.timeout_seconds) if q.timeout_seconds else _MIN_REQUEST_TIMEOUT * (1 + draw())
    return WatchRequest(
        resume_from,
        send_initial and q.allow_watch_bookmarks,
        q.allow_watch_bookmarks,
        timeout,
        client_selector(q.label_selector, q.field_selector, info.name),
    )


def client_selector(label_selector: str | None, field_selector: str | None, name: str) -> Keep:
    """The client's own label and field selectors (and a watched name) as one test. Pure."""
    try:
        labels = parse_selector(label_selector or "")
    except SelectorError as exc:
        raise status.bad_request(str(exc)) from None
    fields = field_terms(field_selector)

    def selected(obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if name and meta.get("name") != name:
            return False
        if not labels.matches(meta.get("labels") or {}):
            return False
        for path, equal, value in fields:
            found = field_value(obj, path)
            if (str(found) if found is not None else "") != value if equal else found == value:
                return False
        return True

    return selected


class CachedWatches:
    """Serves every filtered watch of the tenant listener from the watch cache."""

    def __init__(
        self,
        caches: WatchCaches,
        rows: RowBook,
        metrics: Metrics,
        streams: OpenStreams,
        *,
        bookmark_seconds: float = 30.0,
        buffer_events: int = 1000,
        slow_seconds: float = 10.0,
    ) -> None:
        self._caches, self._rows, self._metrics = caches, rows, metrics
        self._streams, self._bookmark_seconds = streams, bookmark_seconds
        self._buffer_events, self._slow_seconds = buffer_events, slow_seconds

    async def serve(
        self,
        request: web.Request,
        info: RequestInfo,
        gr: GroupResource,
        shape: Shape,
        identity: Identity,
    ) -> web.StreamResponse:
        cache = self._caches.get(gr)
        if cache is None or cache.timeline is None:
            raise status.service_unavailable(
                f"the watch cache of {gr} is not synced yet", retry_after=1
            )
        asked = read_watch_request(info)
        if wants_websocket(request):
            check_handshake(request)
        rows = self._rows.rows_for(cache.gr, cache.path) if shape.table else None
        watch = _Watch(
            cache,
            asked,
            shape,
            identity,
            rows,
            self._bookmark_seconds,
            self._buffer_events,
            self._slow_seconds,
            lambda reason: self._metrics.watches_cut.labels(reason).inc(),
        )
        sink = await open_sink(request)
        gauge = self._metrics.open_watches.labels("tenant", "true")
        gauge.inc()
        forget = self._streams.add(watch.stop)
        try:
            if wants_websocket(request):
                # A socket's client leaves by closing it, which only reading it tells.
                await _until_first(watch.run(sink), sink.client_left())
            else:
                # An HTTP client leaves by closing the connection, which cancels this handler:
                # no task of its own per watch to notice it (10,000 watches, 10,000 tasks).
                await watch.run(sink)
        except ConnectionError:
            pass  # the client went away mid-event
        finally:
            forget()
            gauge.dec()
        await sink.close()
        return sink.response


async def _until_first(*work: Any) -> None:
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class _Watch:
    """One client's cursor in one timeline."""

    def __init__(
        self,
        cache: ResourceCache,
        asked: WatchRequest,
        shape: Shape,
        identity: Identity,
        rows: Rows | None,
        bookmark_seconds: float,
        buffer_events: int,
        slow_seconds: float,
        on_cut: Callable[[str], None],
    ) -> None:
        self.slow_seconds, self.on_cut = slow_seconds, on_cut
        self.cache, self.asked, self.shape, self.identity = cache, asked, shape, identity
        self.rows, self.bookmark_seconds = rows, bookmark_seconds
        self._tenancy: TenancySnapshot | None = None
        self._side: Side | None = None
        self._current: Side | None = None
        self._columns_sent = False
        self._stopped = False
        self._out: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=buffer_events)

    def stop(self) -> None:
        """End the watch (a drain): every watch of the cache is woken to look (drains are
        rare; a wake-up of its own per watch would cost each one a waiter while idle)."""
        self._stopped = True
        self.cache.nudge()

    def side(self, tenancy: TenancySnapshot) -> Side | None:
        if tenancy is not self._tenancy:
            self._tenancy = tenancy
            self._side = side_of(tenancy.view_for(self.identity), self.cache.gr)
        return self._side

    async def run(self, sink: EventSink) -> None:
        """Produce the client's events into a bounded queue while sending them: a client too
        slow for the queue is cut with an ERROR (nothing piles up for it), and one that
        falls behind the cache's window with the cacher's 410."""
        producer = asyncio.ensure_future(self._produce_then_end())
        try:
            while (line := await self._out.get()) is not None:
                await sink.send(line)
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await producer

    async def _produce_then_end(self) -> None:
        try:
            await self._produce()
        except _TooSlow:
            self.on_cut("too_slow")
            self._end(_error_line(status.ApiError(429, "TooManyRequests", _TOO_SLOW)))
            return
        except _Gone as exc:
            self.on_cut("too_old")
            self._end(_error_line(status.expired(str(exc))))
            return
        except Exception:
            # Never a watch that hangs with no end: the client gets an ERROR and re-watches.
            log.exception("a cached watch of %s failed", self.cache.gr)
            self._end(_error_line(status.internal_error("the watch failed in the proxy")))
            return
        self._end()

    async def _emit(self, line: bytes) -> None:
        """Queue one line; a client that leaves it no room for `slow_seconds` is too slow
        (as the cacher's blockTimeout): cut, never waited for without bound."""
        try:
            self._out.put_nowait(line)
        except asyncio.QueueFull:
            try:
                await asyncio.wait_for(self._out.put(line), self.slow_seconds)
            except TimeoutError:
                raise _TooSlow from None

    def _end(self, error: bytes | None = None) -> None:
        """End the client's stream after an ERROR event when there is one: room is made for
        both by dropping queued events, never the error and never the end."""
        needed = 2 if error is not None else 1
        while self._out.maxsize - self._out.qsize() < needed and not self._out.empty():
            self._out.get_nowait()
        if error is not None:
            self._out.put_nowait(error)
        self._out.put_nowait(None)

    async def _produce(self) -> None:
        timeline = self.cache.timeline
        assert timeline is not None
        self.cache.settle()  # a tenancy change not yet recorded: judged as a list would be
        deadline = time.monotonic() + self.asked.timeout
        skip_upto = None
        if self.asked.resume_from is None:
            cursor = timeline.end
            state = dict(timeline.objects)
            self._current = self.side(timeline.tenancy_at(cursor))
            for out in initial(state, self._current, self.asked.selected):
                await self._emit(await self.line(out))
            if self.asked.initial_events_end:
                await self._emit(self.bookmark(timeline.hand_out(cursor), initial_end=True))
        else:
            try:
                cursor = timeline.start_after(self.asked.resume_from)
                self._current = self.side(timeline.tenancy_at(cursor))
            except TooOld as exc:
                raise _Gone(str(exc)) from None
            if self.asked.resume_from > timeline.head.rv:
                # The client listed elsewhere, ahead of what this cache has heard: changes that
                # reach it later with a version it already holds are in its list already.
                skip_upto = self.asked.resume_from
        if self.asked.bookmarks and not self.asked.initial_events_end:
            start = max(timeline.hand_out(cursor), self.asked.resume_from or 0)
            await self._emit(self.bookmark(start))
        while not self._stopped and not self.cache.closed:
            try:
                cursor = await self._replay(cursor, skip_upto)
            except TooOld:
                raise _Gone(_FELL_BEHIND) from None
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if cursor < timeline.end:
                continue
            came = await self._wait(cursor, min(left, self.bookmark_seconds))
            if not came and self.asked.bookmarks and deadline - time.monotonic() > 0:
                await self._emit(self.bookmark(timeline.hand_out(cursor)))

    async def _replay(self, cursor: int, skip_upto: int | None) -> int:
        """Send the events of the entries from `cursor` on; the cursor after them."""
        timeline = self.cache.timeline
        assert timeline is not None
        shown_older = False
        for entry in list(timeline.entries_from(cursor)):
            before, after = self._current, self.side(entry.tenancy_after)
            self._current = after
            body = entry.body
            late = (
                isinstance(body, Change) and body.tenancy is None and body.rv <= (skip_upto or -1)
            )
            if not late:
                state = functools.partial(timeline.state_at, entry.seq)
                for out in events_for(entry, before, after, self.asked.selected, state):
                    older = out.type == ADDED and _rv(out.obj) < entry.order.rv
                    shown_older = shown_older or older
                    await self._emit(await self.line(out, entry.memo))
            cursor = entry.seq + 1
        if shown_older and self.asked.bookmarks:
            await self._emit(self.bookmark(timeline.hand_out(cursor)))
        return cursor

    async def _wait(self, cursor: int, seconds: float) -> bool:
        """Whether an entry came (or the watch was stopped) within `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                await self.cache.wait_beyond(cursor, lambda: self._stopped)
        except TimeoutError:
            return False
        return True

    # -- shaping -------------------------------------------------------------------------------
    async def line(self, out: Out, shared: dict[Any, Any] | None = None) -> bytes:
        """The event's line. Object and metadata lines are the same for every watch sending
        this event: encoded once (`shared`: the entry's memo), not once per watch."""
        if self.rows is not None:
            obj = stamped(out.obj, out.stamp) if out.stamp is not None else out.obj
            return (
                orjson.dumps({"type": out.type, "object": await self.table(obj, out.obj)}) + b"\n"
            )
        key = ("line", id(out.obj), out.type, out.stamp, self.shape.partial)
        if shared is not None and (line := shared.get(key)) is not None:
            return line  # type: ignore[no-any-return]
        obj = stamped(out.obj, out.stamp) if out.stamp is not None else out.obj
        payload = partial_metadata(obj) if self.shape.partial else obj
        line = orjson.dumps({"type": out.type, "object": payload}) + b"\n"
        if shared is not None:
            # Keyed by the object's identity: the entry holds the object, so it cannot be reused.
            shared[key] = line
        return line

    async def table(self, obj: Mapping[str, Any], printed: Mapping[str, Any]) -> dict[str, Any]:
        assert self.rows is not None
        cells = await self.rows.cells(printed)
        columns = self.rows.columns or []
        cells = with_ages(cells, age_columns(columns), obj, time.time())
        row: dict[str, Any] = {"cells": cells}
        if not self.shape.strip_objects:
            row["object"] = partial_metadata(obj) if self.shape.partial else dict(obj)
        else:
            row["object"] = None
        first = not self._columns_sent
        self._columns_sent = True
        return {
            "kind": "Table",
            "apiVersion": META_V1,
            "metadata": {
                "resourceVersion": str((obj.get("metadata") or {}).get("resourceVersion", ""))
            },
            "columnDefinitions": columns if first else None,
            "rows": [row],
        }

    def bookmark(self, rv: int, initial_end: bool = False) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj: dict[str, Any]
        if self.rows is not None:
            obj = {
                "kind": "Table",
                "apiVersion": META_V1,
                "metadata": meta,
                "columnDefinitions": None,
                "rows": [],
            }
        elif self.shape.partial:
            obj = {"kind": "PartialObjectMetadata", "apiVersion": META_V1, "metadata": meta}
        else:
            obj = {"kind": self.cache.kind, "apiVersion": self.cache.api_version, "metadata": meta}
        return orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"


def _rv(obj: Mapping[str, Any]) -> int:
    value = (obj.get("metadata") or {}).get("resourceVersion")
    return int(value) if isinstance(value, str) and value.isdigit() else 0


def _error_line(err: status.ApiError) -> bytes:
    return orjson.dumps({"type": "ERROR", "object": err.body()}) + b"\n"


class _TooSlow(Exception):
    """The client does not read fast enough: its queue is full."""


class _Gone(Exception):
    """The client's resourceVersion is no longer in the window: it must re-list (410)."""
