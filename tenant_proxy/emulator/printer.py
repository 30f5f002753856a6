"""What a Table printer is: its columns (data/table-columns.yaml) and how it fills a row.

Also the small readers the printers share to fill cells from an object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tenant_proxy.emulator import clock, data_files
from tenant_proxy.emulator.field_docs import CREATED_DOC, NAME_DOC
from tenant_proxy.emulator.types import KubeObject


@dataclass(frozen=True)
class Column:
    """One TableColumnDefinition."""

    name: str
    description: str
    type: str = "string"
    format: str = ""
    priority: int = 0

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


Cells = Callable[[KubeObject, datetime], list[Any]]
RowConditions = Callable[[KubeObject], list[dict[str, str]]]


@dataclass(frozen=True)
class Printer:
    """The columns of a kind and how to fill one row."""

    columns: tuple[Column, ...]
    cells: Cells
    conditions: RowConditions | None = None
    columns_from_rows: bool = False  # an empty Table has no columns either (metrics-server)


# --- the column data -------------------------------------------------------------------------

_DOCS = {"$name": NAME_DOC, "$created": CREATED_DOC}


def _column(entry: Mapping[str, Any]) -> Column:
    description = str(entry["description"])
    return Column(
        name=str(entry["name"]),
        description=_DOCS.get(description, description),
        type=str(entry.get("type", "string")),
        format=str(entry.get("format", "")),
        priority=int(entry.get("priority", 0)),
    )


_DATA = data_files.load("table-columns.yaml")
_COLUMNS: dict[str, tuple[Column, ...]] = {
    resource: tuple(_column(entry) for entry in entries)
    for resource, entries in _DATA["printers"].items()
}
NAME = _column(_DATA["common"]["name"])
AGE = _column(_DATA["common"]["age"])
CREATED_AT = _column(_DATA["common"]["created_at"])


def columns(resource: str) -> tuple[Column, ...]:
    """The columns of `resource` (`plural` or `plural.group`) in data/table-columns.yaml."""
    return _COLUMNS[resource]


# --- reading cells ---------------------------------------------------------------------------


def meta(obj: KubeObject) -> dict[str, Any]:
    found = obj.get("metadata")
    return found if isinstance(found, dict) else {}


def dig(obj: Any, *path: str, default: Any = None) -> Any:
    """The value at `path`, or `default` where a step is missing or null."""
    for key in path:
        if not isinstance(obj, Mapping) or key not in obj or obj[key] is None:
            return default
        obj = obj[key]
    return obj


def name_of(obj: KubeObject) -> str:
    return str(meta(obj).get("name", ""))


def age_of(obj: KubeObject, now: datetime) -> str:
    return clock.age(str(meta(obj).get("creationTimestamp", "") or ""), now)


def deleting(obj: KubeObject) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def or_else(value: Any, fallback: str) -> Any:
    return value if value not in (None, "") else fallback


def format_labels(labels: Mapping[str, str] | None) -> str:
    """labels.FormatLabels: sorted `k=v` joined by commas, `<none>` when empty."""
    text = ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))
    return text or "<none>"


def field(*path: str, default: Any = "") -> Callable[[KubeObject], Any]:
    return lambda obj: dig(obj, *path, default=default)


def count(*path: str) -> Callable[[KubeObject], int]:
    """The number of entries of the maps at these top-level fields, together."""
    return lambda obj: sum(len(dig(obj, p, default={}) or {}) for p in path)


def simple(resource: str, *fields: Callable[[KubeObject], Any]) -> Printer:
    """A printer whose row is the name, the given fields, then the age."""

    def cells(obj: KubeObject, now: datetime) -> list[Any]:
        return [name_of(obj), *(f(obj) for f in fields), age_of(obj, now)]

    return Printer(columns(resource), cells)
