"""Serving a filtered watch from the watch cache: no upstream connection per watch.

A watch is a cursor in its resource's timeline (watchcache.timeline). It starts where the
client stands: with initial ADDED events when it asked for none or for "0" (or
`sendInitialEvents`), else just after the resourceVersion it holds (410 when the window no
longer reaches it, as the cacher answers). A client resuming across a change of its own view
goes straight from what it holds to what it may see now (`replay.catch_up`), as a list at its
version is judged by then and now: never what it could see only while it was away. Each entry
becomes the client's events (watchcache.replay), shaped as the client asked (watch_lines), on a
chunked stream or WebSocket messages (watch_sinks).

One task per watch, the request's own: it replays entries and writes their lines straight to
the connection. The timeline is the watches' shared buffer, so a watch keeps no queue: what a
client has not read yet waits in its connection's buffer, up to `buffer_events` lines past the
buffer's high-water mark; a client that then takes nothing for `slow_seconds` is cut with the
cacher's 429 ERROR, and one whose cursor falls out of the window with its 410. With
`allowWatchBookmarks`, a BOOKMARK follows the start, every tenancy change that showed the
client objects with older resourceVersions (so that it resumes from the change, not from an
object's own version), and every `bookmark_seconds` of quiet.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tenant_proxy import status
from tenant_proxy.filtering.objects import everything
from tenant_proxy.filtering.shape import Shape
from tenant_proxy.filtering.watch_requests import WatchRequest, read_watch_request
from tenant_proxy.identity import Identity
from tenant_proxy.kube.resources import GroupResource
from tenant_proxy.observability.metrics import Metrics
from tenant_proxy.requestinfo import RequestInfo
from tenant_proxy.serving.watch_sinks import EventSink, check_handshake, open_sink, wants_websocket
from tenant_proxy.streams import OpenStreams
from tenant_proxy.tenancy.snapshot import TenancySnapshot
from tenant_proxy.watchcache.cache import ResourceCache, WatchCaches
from tenant_proxy.watchcache.replay import (
    ADDED,
    Out,
    Side,
    catch_up,
    events_for,
    initial,
    side_of,
    view_moved,
)
from tenant_proxy.watchcache.rows import RowBook, Rows
from tenant_proxy.watchcache.timeline import Change, Entry, Timeline, TooOld
from tenant_proxy.watchcache.watch_lines import (
    bookmark_line,
    error_line,
    event_line,
    resource_version,
    table_line,
)

log = logging.getLogger("tenant_proxy.watch")

_TOO_SLOW = "the watch client is too slow"
_FELL_BEHIND = "the watch fell behind the cache's window: too old resource version"


@dataclass(frozen=True)
class _Pace:
    """How long a watch waits, and for what."""

    bookmark_seconds: float
    buffer_events: int  # lines queued past the connection's high-water mark before waiting
    slow_seconds: float  # how long a client with such a backlog may take nothing


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
        self._streams = streams
        self._pace = _Pace(bookmark_seconds, buffer_events, slow_seconds)

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
        websocket = wants_websocket(request)
        if websocket:
            check_handshake(request)
        rows = self._rows.rows_for(cache.gr, cache.path) if shape.table else None
        sink = await open_sink(request)
        watch = _Watch(cache, asked, shape, identity, rows, sink, self._pace, self._cut)
        gauge = self._metrics.open_watches.labels("tenant", "true")
        gauge.inc()
        forget = self._streams.add(watch.stop)
        try:
            if websocket:
                # A socket's client leaves by closing it, which only reading it tells.
                await _until_first(watch.run(), sink.client_left())
            else:
                # An HTTP client leaves by closing the connection, which cancels this handler:
                # no task of its own per watch to notice it (10,000 watches, 10,000 tasks).
                await watch.run()
        except ConnectionError:
            pass  # the client went away mid-event
        finally:
            forget()
            gauge.dec()
        await sink.close()
        return sink.response

    def _cut(self, reason: str) -> None:
        self._metrics.watches_cut.labels(reason).inc()


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
    """One client's cursor in one timeline, writing to the client as it goes."""

    # 10,000 of them stay open for hours: no dict per watch.
    __slots__ = (
        "_backlog",
        "_columns_sent",
        "_current",
        "_side",
        "_stop_asked",
        "_stopped",
        "_tenancy",
        "asked",
        "cache",
        "identity",
        "on_cut",
        "pace",
        "rows",
        "shape",
        "sink",
    )

    def __init__(
        self,
        cache: ResourceCache,
        asked: WatchRequest,
        shape: Shape,
        identity: Identity,
        rows: Rows | None,
        sink: EventSink,
        pace: _Pace,
        on_cut: Callable[[str], None],
    ) -> None:
        self.cache, self.asked, self.shape, self.identity = cache, asked, shape, identity
        self.rows, self.sink, self.pace, self.on_cut = rows, sink, pace, on_cut
        self._tenancy: TenancySnapshot | None = None
        self._side: Side | None = None
        self._current: Side | None = None
        self._columns_sent = False
        self._stopped = False
        self._backlog = 0  # lines queued since the connection passed its high-water mark
        # Made once: every wait of the watch asks it (a new closure per wait is garbage to
        # collect, 10,000 at a time).
        self._stop_asked = lambda: self._stopped

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

    async def run(self) -> None:
        """Send the client's events until the watch ends; a client too slow to take them is
        cut with an ERROR, and one that falls behind the cache's window with the cacher's
        410. The ERROR is queued without waiting: nothing more is held for such a client."""
        try:
            await self._produce()
            return
        except _TooSlow:
            self.on_cut("too_slow")
            error = status.ApiError(429, "TooManyRequests", _TOO_SLOW)
        except _Gone as exc:
            self.on_cut("too_old")
            error = status.expired(str(exc))
        except ConnectionError:
            raise
        except Exception:
            # Never a watch that hangs with no end: the client gets an ERROR and re-watches.
            log.exception("a cached watch of %s failed", self.cache.gr)
            error = status.internal_error("the watch failed in the proxy")
        await self.sink.send(error_line(error))

    async def _send(self, line: bytes) -> None:
        """Queue one line for the client. Past the connection's high-water mark, up to
        `buffer_events` lines more are queued; then the client has `slow_seconds` to take
        them (as the cacher's blockTimeout), or it is too slow: never waited for without
        bound, never buffered without bound."""
        if not self.sink.backed_up():
            self._backlog = 0
        elif self._backlog >= self.pace.buffer_events:
            await self._drained()
            self._backlog = 0
        else:
            self._backlog += 1
        await self.sink.send(line)

    async def _drained(self) -> None:
        # Shielded: aiohttp's wait for a drain is shared by every later write of the
        # connection, and cancelling it would fail them (the ERROR, the end of the stream).
        drained = asyncio.ensure_future(self.sink.drained())
        drained.add_done_callback(_seen)  # a connection lost after the cut is no news
        try:
            async with asyncio.timeout(self.pace.slow_seconds):
                await asyncio.shield(drained)
        except TimeoutError:
            raise _TooSlow from None

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
            versions = set()
            for out in initial(state, self._current, self.asked.selected):
                versions.add(resource_version(out.obj))
                await self._send(await self.line(out))
            for rv in versions:  # without a bookmark, the client resumes from the last of these
                timeline.gave(rv, cursor)
            if self.asked.initial_events_end:
                await self._send(self.bookmark(timeline.hand_out(cursor), initial_end=True))
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
            elif self._view_moved_since(timeline, cursor):
                cursor = await self._catch_up(timeline, cursor)
        if self.asked.bookmarks and not self.asked.initial_events_end:
            start = max(timeline.hand_out(cursor), self.asked.resume_from or 0)
            await self._send(self.bookmark(start))
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
            came = await self.cache.wait_beyond(
                cursor, self._stop_asked, min(left, self.pace.bookmark_seconds)
            )
            if not came and self.asked.bookmarks and deadline - time.monotonic() > 0:
                await self._send(self.bookmark(timeline.hand_out(cursor)))

    def _view_moved_since(self, timeline: Timeline[TenancySnapshot], cursor: int) -> bool:
        """Whether the caller's own view of the resource changed anywhere after `cursor`."""
        tenancies = {id(e.tenancy_after): e.tenancy_after for e in timeline.entries_from(cursor)}
        sides = (side_of(t.view_for(self.identity), self.cache.gr) for t in tenancies.values())
        return view_moved(sides, self._current)

    async def _catch_up(self, timeline: Timeline[TenancySnapshot], cursor: int) -> int:
        """Take a client resuming across a change of its own view straight to what it may see
        now (`replay.catch_up`): judged by then *and* now, as a list at its version would be,
        never showing what it could see only meanwhile. The cursor after: the end."""
        end = timeline.end
        now = self.side(timeline.tenancy)
        rv = timeline.hand_out(end)
        outs = catch_up(
            timeline.state_at(cursor),
            self._current,
            timeline.objects,
            now,
            self.asked.selected,
            rv,
        )
        self._current = now
        for out in outs:
            await self._send(await self.line(out))
        for given in {resource_version(out.obj) for out in outs if out.stamp is None}:
            timeline.gave(given, end)
        return end

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
                lines, older, versions = await self._lines(timeline, entry, before, after)
                shown_older = shown_older or older
                for line in lines:
                    await self._send(line)
                for rv in versions:  # the client may resume from any of these: from here
                    timeline.gave(rv, entry.seq + 1)
            cursor = entry.seq + 1
        if shown_older and self.asked.bookmarks:
            await self._send(self.bookmark(timeline.hand_out(cursor)))
        return cursor

    async def _lines(
        self,
        timeline: Timeline[TenancySnapshot],
        entry: Entry[Any],
        before: Side | None,
        after: Side | None,
    ) -> tuple[list[bytes], bool, frozenset[int]]:
        """The client's lines for `entry`, whether one ADDED an object older than it, and
        the resourceVersions the lines carry.

        Watches without selectors or Tables whose sides are the same (callers of one view
        share its Side) send the same lines: made once per entry, in its memo, which keeps the
        sides alive (so their ids stay theirs)."""
        shared = self.rows is None and self.asked.selected is everything
        key = ("lines", id(before), id(after), self.shape.partial)
        if shared and (found := entry.memo.get(key)) is not None:
            return found[2], found[3], found[4]
        lines, older, versions = [], False, set()
        state = functools.partial(timeline.state_at, entry.seq)
        for out in events_for(entry, before, after, self.asked.selected, state):
            own = resource_version(out.obj)
            older = older or (out.type == ADDED and own < entry.order.rv)
            versions.add(out.stamp if out.stamp is not None else own)
            lines.append(await self.line(out, entry.memo))
        if shared:
            entry.memo[key] = (before, after, lines, older, frozenset(versions))
        return lines, older, frozenset(versions)

    async def line(self, out: Out, shared: dict[Any, Any] | None = None) -> bytes:
        """The event's line in the client's form."""
        if self.rows is None:
            return event_line(out, self.shape.partial, shared)
        first, self._columns_sent = not self._columns_sent, True
        return table_line(
            out,
            await self.rows.cells(out.obj),
            self.rows.columns or [],
            first=first,
            partial=self.shape.partial,
            strip_objects=self.shape.strip_objects,
            now=time.time(),
        )

    def bookmark(self, rv: int, initial_end: bool = False) -> bytes:
        return bookmark_line(
            rv,
            self.cache.kind,
            self.cache.api_version,
            table=self.rows is not None,
            partial=self.shape.partial,
            initial_end=initial_end,
        )


def _seen(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


class _TooSlow(Exception):
    """The client does not take its events: its connection stayed backed up too long."""


class _Gone(Exception):
    """The client's resourceVersion is no longer in the window: it must re-list (410)."""
