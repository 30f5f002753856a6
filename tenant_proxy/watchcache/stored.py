"""One object as the watch cache keeps it: compact JSON bytes plus the projection tenancy
judges on. Pure.

Whole decoded objects cost about seven times their JSON (3.6 KB for a 500-byte PV): 100,000 of
them were 346 MiB. So the cache keeps the JSON as the list item the API server sends (no kind,
no apiVersion: those are the resource's, held once in `Head`), and beside it the projection the
tenancy index already made (name, labels, the fields rules read), shared with the index rather
than copied. Judging reads the projection; answering copies the bytes; only what a watch sends
or a client's field selector reads is decoded, and not kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

View = Mapping[str, Any]
"""What tenancy judges an object on: at least its name and labels, and the fields rules read."""


class Head(NamedTuple):
    """The kind and apiVersion a resource's objects share (a watch event's object has them,
    a list's items do not)."""

    kind: str
    api_version: str

    def prefix(self) -> bytes:
        """The start of an object's JSON with its kind and apiVersion, before its own fields."""
        return _prefix(self.kind, self.api_version)


NO_HEAD = Head("", "")


class Stored(Mapping[str, Any]):
    """An object's JSON (`raw`, without kind and apiVersion), its `view`, its resourceVersion.

    Read as a mapping it is the whole object, decoded on each access (tests and rare paths);
    the cache's own code uses `view`, `raw` and `decoded()` explicitly. Equal when the objects
    are: the view is how it is judged, not what it is.
    """

    __slots__ = ("head", "raw", "rv", "view")

    def __init__(self, raw: bytes, view: View, rv: int, head: Head = NO_HEAD) -> None:
        self.raw, self.view, self.rv, self.head = raw, view, rv, head

    @classmethod
    def of(cls, obj: Mapping[str, Any], view: View | None = None) -> Stored:
        """`obj` kept as bytes, judged on `view` (by default the whole object: tests)."""
        head = Head(str(obj.get("kind") or ""), str(obj.get("apiVersion") or ""))
        own = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
        rv = _number((own.get("metadata") or {}).get("resourceVersion"))
        return cls(compact(own), obj if view is None else view, rv, head)

    @property
    def name(self) -> str:
        return str((self.view.get("metadata") or {}).get("name") or "")

    def decoded(self) -> dict[str, Any]:
        """The whole object, kind and apiVersion first (as a watch event carries it)."""
        body: dict[str, Any] = orjson.loads(self.raw)
        if not self.head.kind:
            return body
        return {"kind": self.head.kind, "apiVersion": self.head.api_version, **body}

    def whole(self) -> bytes:
        """The whole object's JSON, kind and apiVersion included, without decoding it."""
        if not self.head.kind:
            return self.raw
        prefix = self.head.prefix()
        if self.raw == b"{}":
            return prefix + b"}"
        return b"".join((prefix, b",", memoryview(self.raw)[1:]))

    def __getitem__(self, key: str) -> Any:
        return self.decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.decoded())

    def __len__(self) -> int:
        return len(self.decoded())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Stored):
            return self.raw == other.raw and self.head == other.head
        if isinstance(other, Mapping):
            return self.decoded() == dict(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"Stored({self.raw[:80]!r})"


def compact(obj: Mapping[str, Any]) -> bytes:
    """`obj`'s JSON, in bytes of its own size: orjson's answer keeps its whole write buffer
    (4 KiB at least, measured with tracemalloc), which 100,000 kept objects cannot afford."""
    return bytes(memoryview(orjson.dumps(obj)))


@lru_cache(maxsize=256)
def _prefix(kind: str, api_version: str) -> bytes:
    return orjson.dumps({"kind": kind, "apiVersion": api_version})[:-1]


def _number(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0
