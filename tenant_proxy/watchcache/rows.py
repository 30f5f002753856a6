"""Table rows for objects the cache holds, read from the API server the first time each state
is shown, then kept.

Only the API server knows how it prints a resource (its columns are per kind, and custom
resources bring their own), so the proxy never prints rows itself: it asks for the one row of
an object (`fieldSelector=metadata.name=...`, as a Table, cells only) once per state it shows,
shared by every watch and list that needs it at the same time. Ages are recomputed when
answered (`ages`), as the API server does.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from tenant_proxy.filtering.objects import partial_metadata
from tenant_proxy.upstream import Upstream, UpstreamError
from tenant_proxy.watchcache.ages import created_at
from tenant_proxy.watchcache.stored import Stored

log = logging.getLogger("tenant_proxy.watchcache")

TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io"

_Row = tuple[int, list[Any]]
"""(resourceVersion of the state printed, cells)."""
Held = tuple[list[Any], float | None]
"""A row's cells and its object's creation time (POSIX: what its ages are computed from)."""


class Rows:
    """The printed rows of one resource's objects, by name and state (resourceVersion),
    bounded (least recently used go).

    A row is shown only for the very state it printed: the same object in another state may
    be another tenant's (a PV rebound into another namespace prints that namespace), so a
    state the API server no longer has is shown by its name alone, never by a newer row.
    """

    def __init__(self, upstream: Upstream, collection: str, max_rows: int = 100_000) -> None:
        self._upstream, self._collection, self._max = upstream, collection, max_rows
        self.columns: list[Any] | None = None
        self._rows: OrderedDict[tuple[str, int], Held] = OrderedDict()
        self._reads: dict[str, asyncio.Future[_Row | None]] = {}
        # The PartialObjectMetadata a Table row carries (kubectl's default), encoded once per
        # held row: decoding the object and encoding its metadata again for every answer
        # cost more than the rest of a Table of a hundred rows.
        self._metadata: dict[tuple[str, int], orjson.Fragment] = {}

    def held(self, obj: Mapping[str, Any]) -> list[Any] | None:
        """The cells of `obj`'s very state if already read, without waiting."""
        meta = obj.get("metadata") or {}
        held = self.held_row(str(meta.get("name", "")), _number(meta.get("resourceVersion")))
        return held[0] if held is not None else None

    def held_row(self, name: str, rv: int) -> Held | None:
        """The cells of `name` at `rv` and its creation time, if already read."""
        key = (name, rv)
        held = self._rows.get(key)
        if held is not None:
            self._rows.move_to_end(key)
        return held

    async def cells(self, obj: Mapping[str, Any]) -> list[Any]:
        """The cells of `obj`'s row, read for its very state; its name alone when the API
        server has moved on from that state (it is leaving the client's view, or its own
        newer event follows)."""
        held = self.held(obj)
        if held is not None:
            return held
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        fetched = await self._read_shared(name)
        if fetched is not None and fetched[0] == _number(meta.get("resourceVersion")):
            return fetched[1]
        return self.name_only(name)

    def metadata(self, obj: Stored) -> orjson.Fragment:
        """`obj`'s PartialObjectMetadata, encoded; kept while its state's row is."""
        key = (obj.name, obj.rv)
        held = self._metadata.get(key)
        if held is None:
            held = orjson.Fragment(orjson.dumps(partial_metadata(obj.decoded())))
            if key in self._rows:
                self._metadata[key] = held
        return held

    def name_only(self, name: str) -> list[Any]:
        """The row of a state whose printing is not to be had: its name, the rest empty."""
        return [name, *([""] * (len(self.columns or [None]) - 1))]

    async def columns_only(self) -> None:
        """Learn the columns without any object to print (an empty answer has them too)."""
        query = "limit=1&includeObject=None"
        try:
            resp = await self._upstream.send(
                "GET", self._upstream.url(self._collection, query), [("Accept", TABLE_ACCEPT)]
            )
            async with resp:
                table = orjson.loads(await resp.read()) if resp.status == 200 else None
        except (UpstreamError, aiohttp.ClientError, ValueError) as exc:
            log.warning("reading the columns of %s failed: %s", self._collection, exc)
            return
        if isinstance(table, dict) and isinstance(table.get("columnDefinitions"), list):
            self.columns = table["columnDefinitions"]

    async def _read_shared(self, name: str) -> _Row | None:
        shared = self._reads.get(name)
        if shared is None:
            shared = self._reads[name] = asyncio.ensure_future(self._read(name))
            shared.add_done_callback(lambda _f: self._reads.pop(name, None))
        try:
            return await asyncio.shield(shared)
        except (UpstreamError, aiohttp.ClientError, ValueError, TimeoutError) as exc:
            log.warning("reading the table row of %s %s failed: %s", self._collection, name, exc)
            return None

    async def _read(self, name: str) -> _Row | None:
        query = f"fieldSelector={quote('metadata.name=' + name, safe='')}&includeObject=Metadata"
        resp = await self._upstream.send(
            "GET", self._upstream.url(self._collection, query), [("Accept", TABLE_ACCEPT)]
        )
        async with resp:
            if resp.status != 200:
                return None
            table = orjson.loads(await resp.read())
        if not isinstance(table, dict) or table.get("kind") != "Table":
            return None
        if self.columns is None and isinstance(table.get("columnDefinitions"), list):
            self.columns = table["columnDefinitions"]
        rows = table.get("rows") or []
        if len(rows) != 1 or not isinstance(rows[0], dict):
            return None
        meta = (rows[0].get("object") or {}).get("metadata") or {}
        row = (_number(meta.get("resourceVersion")), list(rows[0].get("cells") or []))
        self._rows[(name, row[0])] = (row[1], created_at(meta))
        while len(self._rows) > self._max:
            gone, _held = self._rows.popitem(last=False)
            self._metadata.pop(gone, None)
        return row


class RowBook:
    """The rows of every filtered resource, shared by watches and lists."""

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream
        self._rows: dict[tuple[object, str], Rows] = {}

    def rows_for(self, gr: object, collection: str) -> Rows:
        key = (gr, collection)
        if key not in self._rows:
            self._rows[key] = Rows(self._upstream, collection)
        return self._rows[key]


def _number(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0
