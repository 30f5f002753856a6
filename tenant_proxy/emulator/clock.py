"""Ages as kubectl and kube-apiserver print them (apimachinery's `duration.HumanDuration`)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

_MINUTE = 60
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR


def parse_timestamp(value: str) -> datetime | None:
    """An RFC 3339 timestamp as Kubernetes writes them (`2026-11-24T13:53:53Z`), or None."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age(created: str, now: datetime) -> str:
    """The Age cell: time since `created`, or `<unknown>` when there is no timestamp."""
    timestamp = parse_timestamp(created)
    if timestamp is None:
        return "<unknown>"
    return human_duration((now - timestamp).total_seconds())


def human_duration(seconds_elapsed: float) -> str:
    """~2-3 significant figures of a duration; up to 2s in the future reads as now."""
    # Go converts with int(), which truncates towards zero.
    seconds = math.trunc(seconds_elapsed)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 2 * _MINUTE:
        return f"{seconds}s"
    return _minutes_or_more(seconds)


def _minutes_or_more(seconds: int) -> str:
    minutes = seconds // _MINUTE
    if minutes < 10:
        return _pair(minutes, "m", seconds % _MINUTE, "s")
    if minutes < 3 * 60:
        return f"{minutes}m"
    hours = seconds // _HOUR
    if hours < 8:
        return _pair(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return _pair(hours // 24, "d", hours % 24, "h")
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        return _pair(hours // 24 // 365, "y", (hours // 24) % 365, "d")
    return f"{hours // 24 // 365}y"


def _pair(major: int, major_unit: str, minor: int, minor_unit: str) -> str:
    if minor == 0:
        return f"{major}{major_unit}"
    return f"{major}{major_unit}{minor}{minor_unit}"


def rfc3339(value: datetime) -> str:
    """Second-precision UTC timestamp, as metav1.Time serialises."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
