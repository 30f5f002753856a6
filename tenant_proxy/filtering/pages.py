"""The pages of a rewritten list: split an upstream page, judge it, answer the tenant's share.
Pure.

A tenant's list of a rewritten resource (PVs by claim namespace, classes by name...) reads the
whole collection, page by page, and building every object as Python dicts would cost more than
the API server took to send it. So a page is first *split*: msgspec cuts it into raw entries and
decodes of each only the fields ownership reads (`Owns.fields`) into sparse dicts, in C; what
the judge rejects on those is dropped undecoded. An entry that fails that shallow reading stays
a candidate for the full judgement, so splitting only ever removes what the full judgement would
remove too. The candidates are then judged whole and shaped as the client asked (`take`), and
the answer is assembled with the proxy's own metadata (`assemble`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypedDict

import msgspec
import orjson

from tenant_proxy.filtering.continuation import Position
from tenant_proxy.filtering.lists import NotAList, decode_object
from tenant_proxy.filtering.objects import META_API_VERSION, ObjectTest, partial_metadata, passes
from tenant_proxy.filtering.tables import row_kept, shape_row

FieldPath = tuple[str, ...]


@dataclass
class Page:
    """One upstream page: its envelope and the entries that may be the tenant's."""

    envelope: dict[str, Any]  # every top-level field but the entries, decoded
    table: bool
    size: int  # entries in the upstream page
    candidates: list[tuple[int, bytes]]  # (position in the page, raw entry), in order

    @property
    def resource_version(self) -> str:
        meta = self.envelope.get("metadata")
        rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
        return rv if isinstance(rv, str) else ""


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    """A List or Table as the API server sends it; any other top-level field means "not the
    plain shape", and the page is decoded whole instead."""

    kind: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    apiVersion: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    metadata: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    columnDefinitions: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    items: list[msgspec.Raw] | msgspec.UnsetType | None = msgspec.UNSET
    rows: list[msgspec.Raw] | msgspec.UnsetType | None = msgspec.UNSET


class _ListMeta(msgspec.Struct):
    continue_: str | None = msgspec.field(default=None, name="continue")


class _Head(msgspec.Struct):
    metadata: _ListMeta | None = None


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_HEAD = msgspec.json.Decoder(_Head)


# The list's own metadata object is flat (resourceVersion, continue, remainingItemCount) and
# comes before the items; an object's metadata nests (labels...), so this cannot match inside one.
_HEAD_CONTINUE = re.compile(rb'"metadata":\{[^{}]*?"continue":"([A-Za-z0-9_=+/-]+)"')


def continue_in_head(head: bytes) -> str | None:
    """The continue token of a page from its first bytes, before the rest has arrived: a hint
    to ask for the next page early. The whole page's `upstream_continue` is what counts."""
    found = _HEAD_CONTINUE.search(head)
    return found.group(1).decode() if found else None


def upstream_continue(body: bytes) -> str | None:
    """The API server's continue token of a page, read cheaply (so the next page can be asked
    for before this one is judged); None when there is none or the body is unusual."""
    try:
        meta = _HEAD.decode(body).metadata
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return meta.continue_ if meta is not None and meta.continue_ else None


_ENVELOPE_FIELDS = ("kind", "apiVersion", "metadata", "columnDefinitions")


class Splitting:
    """A page being split a slice of entries at a time, so that a caller serving others can
    let them run in between (a large page takes tens of milliseconds)."""

    def __init__(self, body: bytes, owns: ObjectTest, fields: frozenset[FieldPath]) -> None:
        self._owns = owns
        self._entries: list[msgspec.Raw] = []
        self._probe: msgspec.json.Decoder[Any] | None = None
        self._done = 0
        try:
            envelope = _ENVELOPE.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.page = _split_whole(body)
            return
        table = envelope.rows is not msgspec.UNSET
        if table == (envelope.items is not msgspec.UNSET):
            self.page = _split_whole(body)
            return
        entries = (envelope.rows if table else envelope.items) or []
        assert isinstance(entries, list)
        head = {
            name: orjson.loads(bytes(raw))
            for name in _ENVELOPE_FIELDS
            if (raw := getattr(envelope, name)) is not msgspec.UNSET
        }
        self.page = Page(head, table, len(entries), [])
        self._entries, self._probe = entries, _probe_decoder(fields, table)

    def step(self, count: int) -> bool:
        """Judge up to `count` more entries; whether the page is done."""
        start, stop = self._done, min(self._done + count, len(self._entries))
        if start < stop:
            assert self._probe is not None
            probe, owns, table = self._probe, self._owns, self.page.table
            self.page.candidates.extend(
                (i, bytes(self._entries[i]))
                for i in range(start, stop)
                if _may_keep(self._entries[i], probe, owns, table)
            )
        self._done = stop
        return stop >= len(self._entries)


def _split_whole(body: bytes) -> Page:
    """A page of an unusual shape: every entry is a candidate (the full judgement decides)."""
    doc = decode_object(body)
    table = doc.get("kind") == "Table"
    key = "rows" if table else "items"
    if key not in doc:
        raise NotAList(f"a {doc.get('kind')!r} is not a list")
    entries = doc.pop(key)
    entries = [] if entries is None else entries
    if not isinstance(entries, list):
        raise NotAList(f"{key} is not a list")
    doc.pop("items" if table else "rows", None)
    return Page(doc, table, len(entries), [(i, orjson.dumps(e)) for i, e in enumerate(entries)])


def _may_keep(
    raw: msgspec.Raw, probe: msgspec.json.Decoder[Any], owns: ObjectTest, table: bool
) -> bool:
    try:
        sparse = probe.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return True  # not readable shallowly: the full judgement decides (and fails closed)
    if table:
        sparse = sparse.get("object")
        if not isinstance(sparse, dict):
            return True
    try:
        return owns(sparse)
    except (KeyError, TypeError, ValueError, AttributeError):
        return True


@dataclass
class Taken:
    entries: list[dict[str, Any]]  # as the client asked for them
    next_skip: int  # where the next page starts in this upstream page (== size: exhausted)
    judged: int  # upstream entries this take passed over (for the count of withheld objects)


def take(
    page: Page,
    owns: ObjectTest,
    *,
    skip: int = 0,
    want: int | None = None,
    strip_objects: bool = False,
    metadata_only: bool = False,
) -> Taken:
    """The tenant's entries of `page` from position `skip`, at most `want` of them."""
    entries: list[dict[str, Any]] = []
    for position, raw in page.candidates:
        if position < skip:
            continue
        if want is not None and len(entries) >= want:
            return Taken(entries, position, position - skip)
        entry = orjson.loads(raw)
        if page.table:
            if row_kept(owns, entry):
                entries.append(shape_row(entry, strip_objects, metadata_only))
        elif passes(owns, entry):
            entries.append(partial_metadata(entry) if metadata_only else entry)
    return Taken(entries, page.size, max(page.size - skip, 0))


def resume_position(
    page: Page,
    taken: Taken,
    *,
    fetched_with: str,
    following: str | None,
    limit_reached: bool,
    snapshot: str,
    page_size: int,
) -> Position | None:
    """Where the tenant's next page starts, or None when its list is complete.

    Inside `page` when `take` stopped before its end (re-read with `fetched_with`, the upstream
    token that fetched it); at the start of the following upstream page when the client's
    `limit` was reached exactly at this page's end (`limit_reached`).
    """
    if taken.next_skip < page.size:
        return Position(fetched_with, taken.next_skip, snapshot, page_size)
    if following is not None and limit_reached:
        return Position(following, 0, snapshot, page_size)
    return None


def assemble(
    first: Page,
    entries: list[dict[str, Any]],
    *,
    metadata_only: bool,
    continue_token: str | None,
) -> bytes:
    """The tenant's page: the first upstream page's envelope, the list's snapshot, the proxy's
    own continue token (the API server's names other tenants' objects) and no
    remainingItemCount (it would count the whole cluster)."""
    meta: dict[str, Any] = {"resourceVersion": first.resource_version}
    if continue_token:
        meta["continue"] = continue_token
    doc = {**first.envelope, "metadata": meta}
    if first.table:
        doc["rows"] = entries
    else:
        doc["items"] = entries
        if metadata_only:
            doc.update(kind="PartialObjectMetadataList", apiVersion=META_API_VERSION)
    return orjson.dumps(doc)


@lru_cache(maxsize=64)
def _probe_decoder(fields: frozenset[FieldPath], table: bool) -> msgspec.json.Decoder[Any]:
    """A decoder reading only `fields` of an object (of a row's object, for a Table).

    The type is a tree of TypedDicts: msgspec fills plain dicts with just those keys, so the
    judge gets the sparse object as it is, and an absent key stays absent, as in the full
    object. A step that is present but not an object fails validation: the entry then stays a
    candidate for the full judgement.
    """
    tree: dict[str, Any] = {}
    for path in fields:
        node = tree
        for step in path[:-1]:
            child = node.setdefault(step, {})
            if child is None:  # a shorter path already reads this step whole
                break
            node = child
        else:
            node[path[-1]] = None  # a leaf: read whole
    obj_type = _typed_dict(tree)
    return msgspec.json.Decoder(_typed_dict({"object": obj_type}) if table else obj_type)


def _typed_dict(tree: Mapping[str, Any]) -> Any:
    fields = {
        key: Any
        if child is None
        else (_typed_dict(child) if isinstance(child, Mapping) else child) | None
        for key, child in tree.items()
    }
    return TypedDict("Probe", fields, total=False)  # type: ignore[operator]
