"""A tenant's page of a list, from a state the watch cache holds, and the answer's body. Pure.

Objects are answered in name order (the API server's key order for cluster-scoped objects),
at most `limit` of them; when more of the caller's objects follow, the page says after which
name the next one starts. Bodies are assembled from each object's stored bytes (orjson
fragments): nothing is decoded or encoded again but the envelope (and PartialObjectMetadata,
which is a new object).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import orjson

from tenant_proxy.filtering.objects import ObjectTest, everything, partial_metadata, passes
from tenant_proxy.watchcache.replay import Side, Whole, visible, whole
from tenant_proxy.watchcache.timeline import Change, Obj, Timeline, TooOld

META_V1 = "meta.k8s.io/v1"


H = TypeVar("H", Obj, Whole)
"""Objects as kept (the cache), or decoded (pure callers)."""


class OwnedNames:
    """The names of the objects one side owns in a timeline's current state, in name order,
    kept in step with the timeline: each change of an object is judged once, not every
    object on every read.

    Keyed (by its owner) on the side's rules: equal rules judge alike, so tenancy entries
    change nothing here (a caller whose rules changed has another `OwnedNames`). Starts over
    from the whole state when the timeline is another one or its window has moved past the
    last entry applied.
    """

    def __init__(self, owns: ObjectTest) -> None:
        self._owns = owns
        self._of: Timeline[Any] | None = None
        self._seq = 0
        self._names: set[str] = set()
        self._sorted: list[str] | None = None

    def names(self, timeline: Timeline[Any]) -> list[str]:
        """The owned names at `timeline.end` (sorted; not to be changed by the caller)."""
        end = timeline.end
        if timeline is not self._of:
            self._restart(timeline)
        elif self._seq != end:
            try:
                for entry in timeline.entries_from(self._seq):
                    if isinstance(entry.body, Change):
                        self._judge(entry.body.key, entry.body.cur)
            except TooOld:
                self._restart(timeline)
        self._seq = end
        if self._sorted is None:
            self._sorted = sorted(self._names)
        return self._sorted

    def _restart(self, timeline: Timeline[Any]) -> None:
        self._of, self._sorted = timeline, None
        owns = self._owns
        self._names = {k for k, obj in timeline.objects.items() if passes(owns, obj.view)}

    def _judge(self, key: str, cur: Obj | None) -> None:
        owned = cur is not None and passes(self._owns, cur.view)
        if owned != (key in self._names):
            self._sorted = None
            if owned:
                self._names.add(key)
            else:
                self._names.discard(key)


def page_of(
    state: Mapping[str, H],
    names: Sequence[str],
    side: Side | None,
    selected: ObjectTest,
    after: str,
    limit: int | None,
    read: Callable[[Any], Whole] = whole,
    *,
    judged: bool = False,
) -> tuple[list[H], str | None]:
    """The caller's objects of `state` among `names` (sorted) past `after`, at most `limit`,
    and the last name answered when more follow (None: the list is complete). `read`: what
    the client's selectors look at (the projection when they read only names and labels).
    `judged`: `names` are exactly those `side` owns in `state` (`OwnedNames`): only the
    client's selectors are applied."""
    if judged and selected is everything:
        whole = _owned_page(state, names, side, after, limit)
        if whole is not None:
            return whole
    out: list[H] = []
    for name in _past(names, after):
        obj = state.get(name)
        if judged:
            if obj is None or side is None:
                continue
            if selected is not everything and not selected(read(obj)):
                continue
        elif not visible(side, selected, obj, read):
            continue
        if limit is not None and len(out) == limit:
            return out, _name(out[-1])
        assert obj is not None
        out.append(obj)
    return out, None


def _owned_page(
    state: Mapping[str, H],
    names: Sequence[str],
    side: Side | None,
    after: str,
    limit: int | None,
) -> tuple[list[H], str | None] | None:
    """`page_of` where every name is the caller's (judged, no client selector): a slice of
    `names`, not a test per name (the common `kubectl get`). None: a name the state lacks."""
    if side is None:
        return [], None
    start = bisect.bisect_right(names, after) if after else 0
    end = len(names) if limit is None else min(start + limit, len(names))
    out: list[H] = []
    for name in names[start:end]:
        obj = state.get(name)
        if obj is None:
            return None
        out.append(obj)
    return out, (names[end - 1] if end < len(names) and out else None)


def _name(obj: Obj | Whole) -> str:
    return obj.name if isinstance(obj, Obj) else str(obj["metadata"]["name"])


def _past(names: Sequence[str], after: str) -> Iterable[str]:
    """The names after `after` (a page starts where the last one ended, not from the first)."""
    start = bisect.bisect_right(names, after) if after else 0
    return (names[i] for i in range(start, len(names)))


def list_bytes(
    kind: str,
    api_version: str,
    items: list[Obj],
    rv: int,
    continue_token: str | None,
    metadata_only: bool,
) -> bytes:
    """A list as the API server writes it, assembled from the kept objects' bytes: items
    without kind and apiVersion (or PartialObjectMetadata with them)."""
    if metadata_only:
        kind, api_version = "PartialObjectMetadata", META_V1
        listed: list[Any] = [partial_metadata(o.decoded()) for o in items]
    else:
        listed = [orjson.Fragment(o.raw) for o in items]
    meta = _meta(rv, continue_token)
    return orjson.dumps(
        {"kind": f"{kind}List", "apiVersion": api_version, "metadata": meta, "items": listed}
    )


def object_body(obj: Obj, metadata_only: bool) -> bytes:
    """One object as a GET answers it."""
    if metadata_only:
        return orjson.dumps(partial_metadata(obj.decoded()))
    return obj.whole()


def shown(obj: Obj | Mapping[str, Any] | None, metadata_only: bool) -> Any:
    """The object of a Table row as asked, ready for orjson: whole, PartialObjectMetadata, or
    none (`includeObject=None`). A kept object's bytes are copied, not encoded again."""
    if obj is None:
        return None
    if metadata_only:
        return partial_metadata(obj.decoded() if isinstance(obj, Obj) else obj)
    return orjson.Fragment(obj.whole()) if isinstance(obj, Obj) else obj


def table_row(cells: list[Any], shown_object: Any) -> dict[str, Any]:
    """One Table row: its cells (ages as of now) and its object (`shown`)."""
    return {"cells": cells, "object": shown_object}


def table_body(
    columns: list[Any] | None,
    rows: list[dict[str, Any]],
    rv: int,
    continue_token: str | None,
) -> bytes:
    """A Table of `rows` (`table_row`); `columns` None only where the API server leaves them
    out (a watch's events after its first)."""
    return orjson.dumps(
        {
            "kind": "Table",
            "apiVersion": META_V1,
            "metadata": _meta(rv, continue_token),
            "columnDefinitions": columns,
            "rows": rows,
        }
    )


def _meta(rv: int, continue_token: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if continue_token:
        meta["continue"] = continue_token
    return meta
