"""A filtered watch: upstream events and tenancy changes in, the caller's events out.

The upstream side is always a plain HTTP watch read by the proxy; the client's side is an
`EventSink` (watch_sinks): a chunked JSON stream, or WebSocket messages when the client asked
for a WebSocket (Headlamp and other browser dashboards).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp import web

from tenant_proxy.filtering.shape import Shape, list_accept, objects_of, only_params
from tenant_proxy.filtering.watch import LineFramer, LineTooLong, WatchFilter
from tenant_proxy.identity import Identity
from tenant_proxy.requestinfo import RequestInfo
from tenant_proxy.tenancy.index import TenancyIndex
from tenant_proxy.tenancy.model import GroupResource, TenantView, owns
from tenant_proxy.upstream import UpstreamError
from tenant_proxy.watch_sinks import EventSink

if TYPE_CHECKING:
    from tenant_proxy.filtered import FilteredReads

log = logging.getLogger("tenant_proxy.filtered")


class WatchStream:
    """One filtered watch: upstream lines and tenancy changes in, filtered events out."""

    def __init__(
        self,
        reads: FilteredReads,
        info: RequestInfo,
        gr: GroupResource,
        shape: Shape,
        identity: Identity,
    ) -> None:
        self.reads, self.info, self.gr, self.shape = reads, info, gr, shape
        self.identity = identity
        # The view and its generation are taken together, now: tenancy may have moved on while
        # the upstream watch was being opened, and a stale view would drop what it now owns.
        self.generation = reads.index.generation
        view = reads.index.view_for(identity)
        # Only what the client holds is remembered (memory follows the tenant's share, not
        # the cluster's); objects a tenancy change reveals are read when it happens.
        self.filter = WatchFilter(
            self._keep(view),
            strip_objects=shape.strip_objects,
            metadata_only=shape.partial,
            remember_hidden=False,
        )
        self.out: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=reads.watch_buffer_events)

    def _keep(self, view: TenantView | None) -> Any:
        gr = self.gr
        return lambda obj: view is not None and owns(view, gr, obj)

    def _emit(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            try:
                self.out.put_nowait(orjson.dumps(event) + b"\n")
            except asyncio.QueueFull:
                raise _TooSlow from None

    async def run(self, upstream: aiohttp.ClientResponse, sink: EventSink) -> web.StreamResponse:
        """Stream until upstream ends, the client leaves, or a drain; then end the client's
        stream cleanly (end of body, or a close frame)."""
        self.reads.metrics.open_watches.labels("tenant", "true").inc()
        forget = self.reads.streams.add(self._end)
        tasks = [
            asyncio.ensure_future(self._read_upstream(upstream)),
            asyncio.ensure_future(self._follow_tenancy()),
            asyncio.ensure_future(self._until_client_leaves(sink)),
        ]
        try:
            while (line := await self.out.get()) is not None:
                await sink.send(line)
        except ConnectionError:
            pass  # the client went away mid-event: nothing left to tell it
        finally:
            forget()
            self.reads.metrics.open_watches.labels("tenant", "true").dec()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await sink.close()
        return sink.response

    async def _until_client_leaves(self, sink: EventSink) -> None:
        await sink.client_left()
        self._end()

    def _end(self, error: dict[str, Any] | None = None) -> None:
        """End the client's stream, after an ERROR event when there is one to give.

        Room is made for both the error and the end marker: a slow client loses queued
        events, never the error and never the end (else its handler would wait forever).
        """
        needed = 2 if error is not None else 1
        while self.out.maxsize - self.out.qsize() < needed and not self.out.empty():
            self.out.get_nowait()
        if error is not None:
            self.out.put_nowait(orjson.dumps({"type": "ERROR", "object": error}) + b"\n")
        self.out.put_nowait(None)

    async def _read_upstream(self, upstream: aiohttp.ClientResponse) -> None:
        framer = LineFramer(self.reads.max_event_bytes)
        try:
            async for chunk in upstream.content.iter_any():
                for line in framer.feed(chunk):
                    self._judge(orjson.loads(line))
            last = framer.finish()
            if last is not None:
                self._judge(orjson.loads(last))
        except _TooSlow:
            self._end(_status_event(429, "TooManyRequests", "the watch client is too slow"))
            # Nothing more from upstream can reach this client: give the API server its
            # watch back now, not once the client has read its backlog.
            upstream.close()
            return
        except LineTooLong as exc:
            self._end(_status_event(500, "InternalError", str(exc)))
            return
        except (orjson.JSONDecodeError, aiohttp.ClientError):
            pass  # the API server's stream broke: end ours cleanly, the client re-watches
        self._end()

    def _judge(self, event: dict[str, Any]) -> None:
        """Feed one upstream event, judged by tenancy as of this very event."""
        if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
            for obj in objects_of(event):
                self.reads.index.observe(self.gr, str(event["type"]), obj)
        self._sync_view()
        self._emit(self.filter.feed(event))

    def _sync_view(self) -> bool:
        """Adopt the caller's current view if tenancy moved on; whether it did."""
        index = self.reads.index
        if self.generation == index.generation:
            return False
        self.generation = index.generation
        self._emit(self.filter.retarget(self._keep(index.view_for(self.identity))))
        return True

    async def _follow_tenancy(self) -> None:
        index = self.reads.index
        try:
            await self._follow(index)
        except _TooSlow:
            self._end(_status_event(429, "TooManyRequests", "the watch client is too slow"))
        except (UpstreamError, aiohttp.ClientError, orjson.JSONDecodeError, TimeoutError) as exc:
            # A watch that can no longer follow tenancy must not go on silently: end it with
            # an error, so the client re-lists and re-watches.
            log.warning("watch ended: following a tenancy change failed: %s", exc)
            self._end(_status_event(500, "InternalError", "tenancy change could not be applied"))

    async def _follow(self, index: TenancyIndex) -> None:
        # Its own generation: the stream side may adopt a new view first (_sync_view), and the
        # newly owned objects must be read all the same.
        followed = self.generation
        while True:
            followed = await index.wait_change(followed)
            self.generation = index.generation
            view = index.view_for(self.identity)
            # retarget opens a fetch window: objects newly owned that this stream never
            # carried are read, unless the stream brings a newer state meanwhile.
            self._emit(self.filter.retarget(self._keep(view)))
            if view is not None:
                await self._add_unseen(view)
            self.filter.end_fetches()

    async def _add_unseen(self, view: TenantView) -> None:
        """Objects now owned that the client does not have: read them, send ADDED.

        Each is read as a list narrowed to its name and to the client's own label and field
        selectors, so the API server decides whether this watch would carry it at all.
        """
        have = {name for _, name in self.filter.visible_keys()}
        collection = self.info.path.replace("/watch/", "/", 1).rstrip("/")
        query = self.info.query
        for name in sorted(self.reads.index.owned(self.gr, view).keys() - have):
            fields = ",".join(f for f in (query.field_selector, f"metadata.name={name}") if f)
            changes: dict[str, str | None] = {
                "fieldSelector": fields,
                "labelSelector": query.label_selector,
                "includeObject": self.shape.include_object,
            }
            narrowed = query.with_params(changes)
            single = only_params(narrowed, ("fieldSelector", "labelSelector", "includeObject"))
            obj = await self.reads.read_shared(
                collection, single, list_accept(self.shape.accept), self.generation
            )
            if obj is not None:
                self._emit(self.filter.add_fetched(obj))


class _TooSlow(Exception):
    """The client does not read fast enough: its buffer is full."""


def _status_event(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
