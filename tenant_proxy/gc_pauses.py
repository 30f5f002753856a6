"""Python's cyclic collector held off while the watches of a cache take one change.

With 10,000 watches open, a full collection walks about a million objects (every connection's
TLS transport, request, handler coroutines) and takes around a second. Waking 10,000 watches
allocates enough (a callback handle per watch, then each watch's new waiting state) to set one
off in the middle of the wake-up: the last watcher got its event a second or more later
(benchmarks/watch_rss: three full passes of 0.8-1.5 s during its two changes). Held off for the
turn of the event loop in which the woken watches run, a collection comes after their events
are written, and it finds fewer survivors: most of what the wake-up allocated is gone by then.

Whether the collector runs is process-wide state, so the count of holds is module state too.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Protocol


class Wakeable(Protocol):
    """What wakes waiting tasks when set (an asyncio.Event, a cache's waiters)."""

    def set(self) -> None: ...


class _Holds:
    count = 0
    disabled_here = False  # whether the first hold turned the collector off (else: left alone)


def wake_without_collection(event: Wakeable) -> None:
    """Set `event`, with collections held off until the tasks it wakes have taken a turn."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop runs: no task can wake before the next turn, nothing to hold
        event.set()
        return
    if _Holds.count == 0:
        _Holds.disabled_here = gc.isenabled()
        gc.disable()
    _Holds.count += 1
    try:
        event.set()
    finally:
        # Behind every wake-up `set` has just queued: runs once each woken task has stepped.
        loop.call_soon(_release)


def _release() -> None:
    _Holds.count -= 1
    if _Holds.count == 0 and _Holds.disabled_here:
        gc.enable()
