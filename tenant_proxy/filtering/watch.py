"""Filtering a watch stream, sans I/O: events in, events for the client out.

`WatchFilter` keeps the last state of every object seen on the stream (whether the client saw it
or not), keyed by (namespace, name), with a flag for whether the client currently has it. With
that it does what the API server does for label selectors, for any rule: an object entering the
caller's set is sent as ADDED, one leaving it as DELETED (with the last state the client saw, at
the new resourceVersion, as the server does), and when tenancy changes (`retarget`) it sends
ADDED/DELETED for objects already streamed.

Memory: one entry per object held, storing the object (or, for Table watches, its row) as
compact JSON: about its JSON size plus ~175 bytes (measured: 665 B for a 491 B PV). Entries are
decoded only on retarget (~17 ms per 10,000 held objects). By default every live object the
stream carried is held, so a widening view is answered from memory; `remember_hidden=False`
holds only what the client was shown (the tenant's share: what 1,000 watches on one worker can
afford) and relies on the caller reading newly visible objects (`add_fetched`).

`LineFramer` splits a byte stream into watch lines with an explicit size limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tenant_proxy.filtering.forms import Keep, judged, object_key, partial_metadata
from tenant_proxy.filtering.tables import column_definitions, shape_row

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
BOOKMARK, ERROR = "BOOKMARK", "ERROR"
Event = dict[str, Any]
MAX_RECENT_KEYS = 4096


@dataclass(slots=True)
class _Entry:
    raw: bytes
    visible: bool
    is_row: bool
    version: str = ""


class WatchFilter:
    """One client's watch. `feed` each upstream event; `retarget` when the caller's view changes.

    `strip_objects`/`metadata_only` shape Table rows and objects as the client asked (see
    filtering.tables); judgement always uses what upstream sent. `dropped` counts events and rows
    skipped because their metadata could not be read (fail closed).

    `remember_hidden=False` keeps only what the client has (memory and retarget cost follow the
    tenant's share, not the cluster's): objects that become visible through a tenancy change
    are then not known here, and the caller reads them (GET) and hands them to `add_fetched`.
    """

    def __init__(
        self,
        keep: Keep,
        *,
        strip_objects: bool = False,
        metadata_only: bool = False,
        remember_hidden: bool = True,
    ):
        self._keep = keep
        self._strip = strip_objects
        self._metadata_only = metadata_only
        self._remember_hidden = remember_hidden
        self._seen: dict[tuple[str, str], _Entry] = {}
        # Keys the stream carried since the last retarget, while fetches may be in flight: a GET
        # that raced a change or deletion must not bring back a stale state (say, a PV since
        # rebound into another tenant's namespace). None: no fetch window open.
        self._recent: set[tuple[str, str]] | None = None
        self._recent_overflow = False
        self._columns: list[Any] | None = None
        self._columns_sent = False
        self._table_shell: dict[str, Any] = {"kind": "Table", "apiVersion": "meta.k8s.io/v1"}
        self.dropped = 0

    def feed(self, event: Mapping[str, Any]) -> list[Event]:
        return self._feed(event, fetched=False)

    def add_fetched(self, obj: Mapping[str, Any]) -> list[Event]:
        """An object (or one-row Table) read outside the stream after `retarget`: ADDED when
        visible, unless the stream carried it since the retarget (its state is then the newer
        one) or no fetch window is open. Call `end_fetches` when the reads are done."""
        return self._feed({"type": ADDED, "object": obj}, fetched=True)

    def end_fetches(self) -> None:
        """Close the fetch window `retarget` opened (stops remembering recent keys)."""
        self._recent, self._recent_overflow = None, False

    def _feed(self, event: Mapping[str, Any], fetched: bool) -> list[Event]:
        kind = event.get("type")
        obj = event.get("object")
        if kind in (BOOKMARK, ERROR):
            return [self._passed(event)]
        if kind not in (ADDED, MODIFIED, DELETED) or not isinstance(obj, dict):
            self.dropped += 1
            return []
        if obj.get("kind") == "Table":
            return self._feed_table(kind, obj, fetched)
        changes = self._transition(kind, obj, obj, False, fetched)
        return [self._object_event(t, o) for t, o in changes]

    def retarget(self, keep: Keep) -> list[Event]:
        """Adopt a new view; ADDED/DELETED for every remembered object that changes side."""
        self._keep = keep
        self._recent, self._recent_overflow = set(), False
        out: list[Event] = []
        forget = []
        for key, entry in self._seen.items():
            item = orjson.loads(entry.raw)
            now = judged(keep, item["object"] if entry.is_row else item)
            if not now and not self._remember_hidden:
                forget.append(key)
            if now != entry.visible:
                entry.visible = now
                kind = ADDED if now else DELETED
                out.append(
                    self._row_event(kind, item) if entry.is_row else self._object_event(kind, item)
                )
        for key in forget:
            del self._seen[key]
        return out

    def visible_keys(self) -> set[tuple[str, str]]:
        """(namespace, name) of what the client currently believes exists."""
        return {key for key, entry in self._seen.items() if entry.visible}

    def known_keys(self) -> set[tuple[str, str]]:
        """(namespace, name) of the live objects whose state is held here (every one the stream
        carried, or with remember_hidden=False only those shown): retarget covers these."""
        return set(self._seen)

    # --- transitions --------------------------------------------------------------------------

    def _transition(
        self,
        kind: str,
        judged_obj: Mapping[str, Any],
        item: Mapping[str, Any],
        is_row: bool,
        fetched: bool,
    ) -> list[tuple[str, Mapping[str, Any]]]:
        """The client event types for one upstream change of `judged_obj` (`item` is stored)."""
        key = object_key(judged_obj)
        if key is None:
            self.dropped += 1
            return []
        if fetched and not self._may_add_fetched(key):
            return []
        if not fetched and self._recent is not None:
            self._remember_recent(key)
        entry = self._seen.get(key)
        was = entry is not None and entry.visible
        if kind == DELETED:
            self._seen.pop(key, None)
            return [(DELETED, item)] if was else []
        now = judged(self._keep, judged_obj)
        version = _version(judged_obj)
        if now or self._remember_hidden:
            self._seen[key] = _Entry(_compact(item), now, is_row, version)
        else:
            self._seen.pop(key, None)
        if now and was:
            assert entry is not None
            # The client has this object: the very same state again (a fetch and the stream
            # crossing) is nothing new, and any other change is a MODIFIED, never a 2nd ADDED.
            return [] if version and version == entry.version else [(MODIFIED, item)]
        if now:
            return [(ADDED, item)]
        if not was:
            return []
        assert entry is not None
        return [(DELETED, _last_state(entry, judged_obj))]

    def _may_add_fetched(self, key: tuple[str, str]) -> bool:
        if self._recent is None or self._recent_overflow:
            return False  # fail closed: a missing object is relisted later, a stale one leaks
        return key not in self._seen and key not in self._recent

    def _remember_recent(self, key: tuple[str, str]) -> None:
        assert self._recent is not None
        if len(self._recent) >= MAX_RECENT_KEYS:
            self._recent_overflow = True
        else:
            self._recent.add(key)

    def _feed_table(self, kind: str, table: Mapping[str, Any], fetched: bool) -> list[Event]:
        if self._columns is None:
            self._columns = column_definitions(table)
        self._table_shell = {
            k: v for k, v in table.items() if k not in ("rows", "columnDefinitions")
        }
        rows = table.get("rows")
        out: list[Event] = []
        for row in rows if isinstance(rows, list) else []:
            obj = row.get("object") if isinstance(row, dict) else None
            if not isinstance(obj, dict):
                self.dropped += 1
                continue
            assert isinstance(row, dict)
            changes = self._transition(kind, obj, row, True, fetched)
            out += [self._row_event(t, r) for t, r in changes]
        return out

    # --- shaping what the client receives ------------------------------------------------------

    def _object_event(self, kind: str, obj: Mapping[str, Any]) -> Event:
        shaped = partial_metadata(obj) if self._metadata_only else obj
        return {"type": kind, "object": shaped}

    def _row_event(self, kind: str, row: Mapping[str, Any]) -> Event:
        table = dict(self._table_shell)
        table["columnDefinitions"] = self._take_columns()
        table["rows"] = [shape_row(row, self._strip, self._metadata_only)]
        return {"type": kind, "object": table}

    def _take_columns(self) -> list[Any] | None:
        # Only the first Table event the client receives carries the columns, as upstream does.
        if self._columns_sent or self._columns is None:
            return None
        self._columns_sent = True
        return self._columns

    def _passed(self, event: Mapping[str, Any]) -> Event:
        obj = event.get("object")
        if not isinstance(obj, dict) or obj.get("kind") != "Table" or self._columns_sent:
            return dict(event)
        if self._columns is None:
            self._columns = column_definitions(obj)
        return {**event, "object": {**obj, "columnDefinitions": self._take_columns()}}


def _compact(item: Mapping[str, Any]) -> bytes:
    # orjson's bytes keep their (≥ 4 KiB) output buffer; a copy holds only the JSON itself.
    return bytes(memoryview(orjson.dumps(item)))


def _last_state(entry: _Entry, current: Mapping[str, Any]) -> dict[str, Any]:
    """What the client last saw, at the current resourceVersion: what the API server sends
    when an object stops matching a selector (cacher's convertToWatchEvent)."""
    item: dict[str, Any] = orjson.loads(entry.raw)
    obj = item["object"] if entry.is_row else item
    rv = current["metadata"].get("resourceVersion")
    if rv is not None:
        obj["metadata"]["resourceVersion"] = rv
    return item


def _version(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata")
    value = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return value if isinstance(value, str) else ""


class LineTooLong(ValueError):
    """A watch line exceeded the limit: the stream must end (never buffer without bound)."""


class LineFramer:
    """Splits a byte stream into lines (without the newline); blank lines are skipped."""

    def __init__(self, max_line: int) -> None:
        self._max = max_line
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        if b"\n" not in chunk:
            # Only the new chunk is searched, so a long line in small chunks stays linear.
            self._buffer += chunk
            self._check(len(self._buffer))
            return []
        head, *middle, tail = chunk.split(b"\n")
        lines = [bytes(self._buffer) + head, *middle]
        self._buffer = bytearray(tail)
        for length in (*map(len, lines), len(tail)):
            self._check(length)
        return [line for line in lines if line.strip()]

    def _check(self, length: int) -> None:
        if length > self._max:
            raise LineTooLong(f"watch line longer than {self._max} bytes")

    def finish(self) -> bytes | None:
        """The last line when the stream ended without a newline, else None."""
        rest, self._buffer = bytes(self._buffer), bytearray()
        return rest if rest.strip() else None
