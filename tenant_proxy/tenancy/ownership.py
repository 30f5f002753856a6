"""Ownership: whether an object is the caller's to see, compiled once per view and resource
from the view's criteria. Pure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tenant_proxy.kube.labels import Op, Selector
from tenant_proxy.tenancy.rules import Criteria


class Owns:
    """`owns()` for one view and resource, compiled once: every criterion of the view merged by
    kind (one name set, one value set per field path) and tried cheapest first. It runs once per
    item of a tenant's list, tens of thousands of times per request."""

    __slots__ = ("_fields", "_names", "_patterns", "_ruled", "_selectors")

    def __init__(self, criteria: tuple[Criteria, ...]) -> None:
        self._ruled = bool(criteria)
        self._names = frozenset().union(*(c.names for c in criteria))
        by_path: dict[tuple[str, ...], set[str]] = {}
        for c in criteria:
            if c.field_path and c.field_values:
                by_path.setdefault(c.field_path, set()).update(c.field_values)
        self._fields = tuple((path, frozenset(values)) for path, values in by_path.items())
        self._selectors = tuple(label_test(c.selector) for c in criteria if c.selector is not None)
        self._patterns = tuple(c.name_pattern for c in criteria if c.name_pattern is not None)

    @property
    def fields(self) -> frozenset[tuple[str, ...]]:
        """The fields a decision rests on: judged on an object holding only these, the answer
        is the full object's, or True where only the full object can tell (labels that are not
        strings, when no selector reads them)."""
        paths = {("metadata", "name"), *(path for path, _ in self._fields)}
        if self._selectors:
            paths.add(("metadata", "labels"))
        return frozenset(paths)

    def __call__(self, obj: Mapping[str, Any]) -> bool:
        # Objects are decoded JSON: only real dicts count (a `dict` check is several times
        # cheaper than an ABC check).
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        if not self._ruled or not isinstance(meta, dict):
            return False
        name = meta.get("name")
        labels = _labels(meta.get("labels"))
        if not isinstance(name, str) or not name or labels is None:
            return False
        if name in self._names:
            return True
        for path, values in self._fields:
            value: object = obj
            for step in path:
                value = value.get(step) if isinstance(value, dict) else None
            if isinstance(value, str) and value in values:
                return True
        # Tested before use: building a generator costs more than most checks here.
        if self._selectors and any(matches(labels) for matches in self._selectors):
            return True
        return bool(self._patterns) and any(p.fullmatch(name) for p in self._patterns)


def label_test(selector: Selector) -> Callable[[Mapping[str, str]], bool]:
    """`selector.matches`, or for the common all-equality selector (a tenant label) the same
    test as a few dict lookups: it runs once per object of a tenant's list."""
    exact = (Op.EQUALS, Op.DOUBLE_EQUALS, Op.IN)
    if not selector.requirements or any(r.op not in exact for r in selector.requirements):
        return selector.matches
    wanted = tuple((r.key, frozenset(r.values)) for r in selector.requirements)
    if len(wanted) == 1:
        ((key, values),) = wanted
        return lambda labels: labels.get(key) in values
    return lambda labels: all(labels.get(key) in values for key, values in wanted)


def _labels(value: object) -> Mapping[str, str] | None:
    if value is None:
        return {}
    if not isinstance(value, dict):
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return None
    return value


def field_value(obj: Mapping[str, Any], path: tuple[str, ...]) -> object:
    """The value at a dotted path, or None when any step is missing or not an object."""
    current: object = obj
    for step in path:
        if not isinstance(current, dict):
            return None
        current = current.get(step)
    return current
