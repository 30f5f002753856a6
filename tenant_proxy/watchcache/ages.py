"""The Age column of a Table, as the API server prints it when it answers. Pure.

A row kept in the cache was printed when it was read; its Age would freeze there. The API
server computes it at answer time from creationTimestamp with apimachinery's
`duration.HumanDuration` (k8s.io/apimachinery/pkg/util/duration): ported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration of a duration in seconds."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{hours // 24 // 365}y"


def age_columns(columns: Sequence[Mapping[str, Any]]) -> tuple[int, ...]:
    """Positions of the columns the API server prints as an age."""
    return tuple(i for i, c in enumerate(columns) if c.get("name") == "Age")


def with_ages(
    cells: Sequence[Any], ages: tuple[int, ...], obj: Mapping[str, Any], now: float
) -> list[Any]:
    """`cells` with each age recomputed for `now` (a POSIX time) from the object's
    creationTimestamp; unchanged when the object has none that parses."""
    return aged(cells, ages, created_at(obj.get("metadata") or {}), now)


def aged(
    cells: Sequence[Any], ages: tuple[int, ...], created: float | None, now: float
) -> list[Any]:
    """`cells` with each age recomputed for `now` from `created` (None: left as printed)."""
    out = list(cells)
    if created is None:
        return out
    for i in ages:
        if i < len(out):
            out[i] = human_duration(now - created)
    return out


def created_at(metadata: Mapping[str, Any]) -> float | None:
    """An object's creationTimestamp as a POSIX time; None when it has none that parses."""
    return _timestamp(metadata.get("creationTimestamp"))


def _timestamp(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
